//! WebSocket conformance: the Autobahn fuzzing suite (run by `kosoku`) against the gateway's
//! test-only echo endpoint, which shares the chat endpoints' handshake, limits and framing.
//! The results are diffed against `tests/autobahn/expected.json`.
//!
//! Excluded: 12.* and 13.* (permessage-deflate, which the gateway does not negotiate).
//! 9.* (large messages, up to 16 MiB) runs against limits raised for this test only.
//!
//! The suite runs twice: over plain TCP, and over the gateway's TLS listener (kosoku speaks
//! plain WebSocket to a relay in the test that carries each connection over TLS, so the
//! gateway's side is the real wss:// path).

mod common;

use common::venv_bin;
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_test_support::Gateway;

/// The gateway's flags for the suite.
const ECHO: [&str; 12] = [
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
];

#[test]
fn autobahn_results_match_the_expected_file() {
    let gw = Gateway::start(&ECHO);
    run_and_compare(&gw.data_dir.join("autobahn"), &gw.addr.to_string());
}

#[test]
fn autobahn_over_tls_matches_the_same_expected_file() {
    let dir = switchboard_test_support::temp_dir("autobahn-tls");
    let ca = switchboard_test_support::tls::TestCa::new();
    let (cert, key) = ca.leaf("autobahn").write(&dir, &ca);
    let tls_listen = switchboard_test_support::free_addr();
    let gw = Gateway::builder()
        .args(&ECHO)
        .tls(&tls_listen, &cert, &key)
        .start();
    let relay = tls_relay(tls_listen.parse().unwrap(), ca.client_config());
    run_and_compare(&gw.data_dir.join("autobahn"), &relay.to_string());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback port whose connections are carried over TLS to `target` (`localhost`).
fn tls_relay(
    target: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let connector = tokio_rustls::TlsConnector::from(tls);
            loop {
                let Ok((mut plain, _)) = listener.accept().await else {
                    return;
                };
                let connector = connector.clone();
                tokio::spawn(async move {
                    let _ = plain.set_nodelay(true);
                    let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tcp.set_nodelay(true);
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let mut secure = connector.connect(name, tcp).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut plain, &mut secure).await;
                });
            }
        });
    });
    addr
}

/// Runs the suite against `address` and diffs it against the expected file.
fn run_and_compare(out_dir: &std::path::Path, address: &str) {
    let kosoku = venv_bin("kosoku");
    let status = std::process::Command::new(kosoku)
        .args(["-m", "fuzzingclient", "-x", "12.*", "-x", "13.*", "-o"])
        .arg(out_dir)
        .arg(address)
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
