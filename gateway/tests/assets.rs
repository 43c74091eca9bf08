//! The static files the gateway serves: the demo page at `/` with the visitor widget, and
//! the widget itself within its size budget. (The widget's behaviour in a browser is
//! tested with headless Chromium: issue 14.)

use std::io::Write;
use switchboard_test_support::{http, Gateway};

/// The widget's budget, gzipped: it rides on every page of a site.
const WIDGET_GZIP_BUDGET: usize = 8 * 1024;

#[test]
fn the_demo_page_and_the_widget_are_served_from_the_binary() {
    let gw = Gateway::start(&[]);
    let addr = gw.addr.to_string();
    let page = http::get(&addr, "/", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains(r#"<script src="/widget.js""#));
    let js = http::get(&addr, "/widget.js", &[]);
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&js.body).unwrap();
    let size = gz.finish().unwrap().len();
    assert!(
        size <= WIDGET_GZIP_BUDGET,
        "widget.js is {size} bytes gzipped, over its {WIDGET_GZIP_BUDGET}-byte budget"
    );
    assert_eq!(http::get(&addr, "/nothing.js", &[]).status, 404);
}
