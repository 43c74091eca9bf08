//! WebSocket conformance: the Autobahn fuzzing suite (run by `kosoku`) against the gateway's
//! test-only echo endpoint, which shares the chat endpoints' handshake, limits and framing.
//! The results are diffed against `tests/autobahn/expected.json`.
//!
//! Excluded: 12.* and 13.* (permessage-deflate, which the gateway does not negotiate).
//! 9.* (large messages, up to 16 MiB) runs against limits raised for this test only.

mod common;

use common::venv_bin;
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_test_support::Gateway;

#[test]
fn autobahn_results_match_the_expected_file() {
    let kosoku = venv_bin("kosoku");
    let gw = Gateway::start(&[
        // Nothing is stored: messages up to 16 MiB are allowed only without a bridge.
        "--bridge",
        "off",
        "--echo-path",
        "/",
        "--max-message-bytes",
        "16777216",
        "--max-outbox-bytes",
        "33554432",
        "--rate-per-sec",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let out_dir = gw.data_dir.join("autobahn");
    let status = std::process::Command::new(kosoku)
        .args(["-m", "fuzzingclient", "-x", "12.*", "-x", "13.*", "-o"])
        .arg(&out_dir)
        .arg(gw.addr.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run kosoku");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("index.json")).unwrap())
            .unwrap();
    let (_, cases) = index
        .as_object()
        .unwrap()
        .iter()
        .next()
        .expect("one agent in the report");
    let got: BTreeMap<String, (String, String)> = cases
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    v["behavior"].as_str().unwrap().into(),
                    v["behaviorClose"].as_str().unwrap().into(),
                ),
            )
        })
        .collect();
    let expected_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/autobahn/expected.json"
    ))
    .unwrap();
    let expected: BTreeMap<String, (String, String)> =
        serde_json::from_str(&expected_text).unwrap();
    let mut diffs = Vec::new();
    for (case, want) in &expected {
        match got.get(case) {
            Some(g) if g == want => {}
            other => diffs.push(format!("{case}: expected {want:?}, got {other:?}")),
        }
    }
    for case in got.keys().filter(|c| !expected.contains_key(*c)) {
        diffs.push(format!("{case}: not in the expected file"));
    }
    assert!(
        diffs.is_empty(),
        "Autobahn differs from expected ({} cases):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(expected.len(), 301);
    // kosoku exits 1 when any case is not OK; ours has NON-STRICT and INFORMATIONAL ones on
    // purpose (see the expected file), so its status only has to be a normal exit.
    assert!(status.code().is_some());
}
