//! A client we did not write: Python's `websockets` library drives a conversation
//! (tests/py/third_party_client.py) against the real binary.

mod common;

use common::venv_bin;
use switchboard_test_support::Gateway;

#[test]
fn python_websockets_client_holds_a_whole_conversation() {
    let python = venv_bin("python");
    let gw = Gateway::start(&[]);
    let token = gw.token("py-agent");
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/third_party_client.py"
        ))
        .arg(format!("ws://{}", gw.addr))
        .arg(token)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
