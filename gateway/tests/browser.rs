//! The visitor widget in a real browser: headless Chromium (Debian's package, driven by
//! Playwright from tests/py/widget_browser.py) against the real gateway. Screenshots land
//! in the test's directory, or in `SWITCHBOARD_SCREENSHOTS` (e.g. `docs/screenshots`, to
//! refresh the README's pictures).

mod common;

use common::venv_bin;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use switchboard_test_support::{temp_dir, Gateway};

#[test]
fn a_visitor_chats_with_an_agent_through_the_widget() {
    let python = venv_bin("python");
    let mut gw = Gateway::start(&[]);
    let token = gw.token("ann");
    let shots = std::env::var_os("SWITCHBOARD_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp_dir("browser"));
    std::fs::create_dir_all(&shots).unwrap();
    let mut child = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/widget_browser.py"
        ))
        .arg(gw.addr.to_string())
        .arg(token)
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    // The browser asks for the gateway to be restarted mid-conversation, once.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "restart" {
            gw.restart();
            writeln!(stdin, "go").unwrap();
        }
        said.push(line);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && said.last().map(String::as_str) == Some("ok"),
        "the browser test failed:\n{}\n{}",
        said.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shots.join("widget-desktop.png").exists());
}

#[test]
fn an_agent_answers_from_the_console() {
    let python = venv_bin("python");
    let dir = temp_dir("console");
    let api = switchboard_test_support::free_addr();
    let gw = Gateway::builder().data_dir(&dir).bridge_http(&api).start();
    let root = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    switchboard_test_support::accounts::create_agent(&dir, "ann", "supervisor", "ann passphrase");
    switchboard_test_support::accounts::create_agent(&dir, "bob", "agent", "bob passphrase");
    let reply = serde_json::json!({"shortcut": "/shipped", "site_wide": true,
        "body": "Your parcel left our warehouse today, {agent.name} here."});
    let r = switchboard_test_support::http::post(
        &api,
        "/api/v1/canned-replies",
        &[("Authorization", root.as_str())],
        &reply.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let shots = std::env::var_os("SWITCHBOARD_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp_dir("console-shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/console_browser.py"
        ))
        .args([&gw.addr.to_string(), &api, "ann", "ann passphrase"])
        .arg(&shots)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "the console test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
