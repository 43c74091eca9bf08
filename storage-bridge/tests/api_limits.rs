//! The API's abuse limits on a real bridge: a caller over its rate gets 429 with
//! `Retry-After` while another caller is served, health is never counted, and a body over
//! the cap gets 413.

use switchboard_test_support::{http, temp_dir, Bridge};

#[test]
fn a_caller_over_its_rate_waits_while_others_are_served() {
    let dir = temp_dir("api-limits");
    let bridge = Bridge::builder(&dir)
        .args(&[
            "--api-rate-per-s",
            "1",
            "--api-burst",
            "3",
            "--api-max-body-bytes",
            "1000",
        ])
        .start();
    let addr = bridge.http.clone().unwrap();
    let noisy = [("Authorization", "Bearer noisy-caller")];
    let statuses: Vec<u16> = (0..5)
        .map(|_| http::get(&addr, "/api/v1/teams", &noisy).status)
        .collect();
    // Three within the burst (answered: refused for their made-up token, or for want of a
    // secret, but answered), then held back.
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    assert_eq!(statuses[3..], [429, 429], "{statuses:?}");
    let r = http::get(&addr, "/api/v1/teams", &noisy);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("rate_limited"), "{}", r.text());
    // Another caller, and health, are not held back.
    let quiet = [("Authorization", "Bearer quiet-caller")];
    assert_ne!(http::get(&addr, "/api/v1/teams", &quiet).status, 429);
    for _ in 0..10 {
        assert_eq!(http::get(&addr, "/healthz", &[]).status, 200);
    }
    // A body over the cap.
    let big = format!(r#"{{"agent":"ann","password":"{}"}}"#, "x".repeat(2000));
    let r = http::post(
        &addr,
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(bridge.metrics().value("bridge_api_rate_limited_total", &[]) >= 2.0);
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}
