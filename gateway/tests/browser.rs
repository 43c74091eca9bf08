//! The visitor widget in a real browser: headless Chromium (Debian's package, driven by
//! Playwright from tests/py/widget_browser.py) against the real gateway. Screenshots land
//! in the test's directory, or in `SWITCHBOARD_SCREENSHOTS` (e.g. `docs/screenshots`, to
//! refresh the README's pictures).

mod common;

use common::venv_bin;
use switchboard_test_support::{temp_dir, Gateway};

#[test]
fn a_visitor_chats_with_an_agent_through_the_widget() {
    let python = venv_bin("python");
    let gw = Gateway::start(&[]);
    let token = gw.token("ann");
    let shots = std::env::var_os("SWITCHBOARD_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp_dir("browser"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/widget_browser.py"
        ))
        .arg(gw.addr.to_string())
        .arg(token)
        .arg(&shots)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shots.join("widget-desktop.png").exists());
}
