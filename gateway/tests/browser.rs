//! The visitor widget and the agent console in a real browser: headless Chromium (Debian's
//! package, driven by Playwright from tests/py/*_browser.py) against the real gateway and
//! bridge. Screenshots land in the test's directory, or in `SWITCHBOARD_SCREENSHOTS` (an
//! absolute path, e.g. `$PWD/docs/screenshots`, to refresh the README's pictures).

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
    let shots = screenshots_dir("browser");
    let args = [gw.addr.to_string(), token, shots.display().to_string()];
    run_script(&python, "widget_browser.py", &args, &mut gw);
    assert!(shots.join("widget-desktop.png").exists());
}

#[test]
fn an_agent_answers_from_the_console() {
    let python = venv_bin("python");
    let dir = temp_dir("console");
    let api = switchboard_test_support::free_addr();
    let mut gw = Gateway::builder().data_dir(&dir).bridge_http(&api).start();
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
    let shots = screenshots_dir("console-shots");
    let args = [
        gw.addr.to_string(),
        api,
        "ann".into(),
        "ann passphrase".into(),
        shots.display().to_string(),
    ];
    run_script(&python, "console_browser.py", &args, &mut gw);
    assert!(shots.join("console.png").exists());
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `tests/py/SCRIPT` with `args`; each time it prints `restart`, kills the gateway
/// (with its bridge) and starts it again, then answers `go`. Its last line must be `ok`.
fn run_script(python: &std::path::Path, script: &str, args: &[String], gw: &mut Gateway) {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new(python)
        .arg(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdin = child.stdin.take().unwrap();
    let mut said = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
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
        "{script} failed:\n{}\n{}",
        said.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `SWITCHBOARD_SCREENSHOTS`, or a new temporary directory named after `name`.
fn screenshots_dir(name: &str) -> std::path::PathBuf {
    let shots = std::env::var_os("SWITCHBOARD_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp_dir(name));
    std::fs::create_dir_all(&shots).unwrap();
    shots
}
