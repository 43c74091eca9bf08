//! wss:// and https:// on the gateway's TLS listener, beside the plain one, with
//! certificates made in the test (rcgen): Rust and Python (`websockets` with `ssl`) clients,
//! plain HTTP on the TLS port, a bad certificate at start, and the certificate reloaded on
//! SIGHUP, again and again, while handshakes go on and a conversation opened before goes on.

mod common;

use common::venv_bin;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_test_support::tls::TestCa;
use switchboard_test_support::{eventually_async, free_addr, temp_dir, Client, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with a TLS listener using a leaf of `ca` named `first`; the files' directory.
fn gateway_with_tls(ca: &TestCa) -> (Gateway, std::path::PathBuf, SocketAddr) {
    let dir = temp_dir("tls");
    let (cert, key) = ca.leaf("first").write(&dir, ca);
    let tls_listen = free_addr();
    let gw = Gateway::builder().tls(&tls_listen, &cert, &key).start();
    let addr = gw.tls_addr().expect("the TLS address is printed");
    assert_eq!(addr.to_string(), tls_listen);
    (gw, dir, addr)
}

/// A TLS connection to `addr` for `localhost`.
async fn tls_connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("a TLS handshake")
}

/// The leaf certificate the server presented.
fn presented_leaf(s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn wss_and_https_beside_plain_ws() {
    let ca = TestCa::new();
    let (gw, dir, addr) = gateway_with_tls(&ca);
    let tls = ca.client_config();

    // https: health, and the widget's static file; ALPN http/1.1.
    let mut s = tls_connect(addr, tls.clone()).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut s = tls_connect(addr, tls.clone()).await;
    s.write_all(b"GET /widget.js HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.contains("Switchboard visitor widget"),
        "{answer:.200}"
    );

    // wss: a visitor over TLS and an agent over plain ws talk to each other.
    let port = addr.port();
    let mut v = Client::connect_tls(
        &format!("wss://localhost:{port}/ws/visitor?client=web"),
        tls.clone(),
    )
    .await
    .expect("wss");
    let mut ann = Client::connect(&gw.url(&format!("/ws/agent?token={}", gw.token("ann"))))
        .await
        .unwrap();
    v.msg("m1", "hello over TLS", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_owned();
    assert_eq!(ann.assigned().await["conv"], conv.as_str());
    assert_eq!(ann.expect("msg").await["body"], "hello over TLS");
    ann.msg("a1", "and back", Some(&conv)).await;
    assert_eq!(v.expect("msg").await["body"], "and back");

    // A third-party client: Python's websockets with ssl, trusting the CA file.
    let out = std::process::Command::new(venv_bin("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/tls_client.py"
        ))
        .arg(format!("wss://localhost:{port}/ws/visitor?client=api"))
        .arg(ca.write(&dir))
        .output()
        .expect("python");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain HTTP on the TLS port: told so in plain text, and closed.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("TLS"),
        "{answer}"
    );
    // A client that does not trust the certificate fails its handshake; the gateway
    // counts both refusals.
    let stranger = TestCa::new().client_config();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    assert!(tokio_rustls::TlsConnector::from(stranger)
        .connect(name, tcp)
        .await
        .is_err());
    eventually_async(
        "the refusals counted",
        Duration::from_secs(10),
        || {
            (
                gw.metric("chat_tls_refused_total", &["plaintext"]),
                gw.metric("chat_tls_refused_total", &["handshake"]),
            )
        },
        |(p, h)| *p >= 1.0 && *h >= 1.0,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_is_reloaded_on_sighup_under_handshakes_and_open_connections_go_on() {
    let ca = TestCa::new();
    let (gw, dir, addr) = gateway_with_tls(&ca);
    let tls = ca.client_config();
    let port = addr.port();
    let mut v = Client::connect_tls(
        &format!("wss://localhost:{port}/ws/visitor?client=api"),
        tls.clone(),
    )
    .await
    .unwrap();
    v.msg("m0", "before the reload", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_owned();

    // Handshakes without a pause (bounded in count) while the certificate is renewed five
    // times: every one succeeds, with one certificate or the other.
    let hammer = {
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..300 {
                let s = tls_connect(addr, tls.clone()).await;
                seen.insert(presented_leaf(&s));
            }
            seen.len()
        })
    };
    let mut newest = Vec::new();
    for round in 0..5 {
        let leaf = ca.leaf(&format!("renewed {round}"));
        leaf.write(&dir, &ca);
        gw.sighup();
        newest = leaf.der;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let distinct = hammer.await.expect("every handshake succeeded");
    assert!(distinct >= 2, "handshakes saw {distinct} certificates");
    // New handshakes get the newest certificate (the signal thread may still be loading).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while presented_leaf(&tls_connect(addr, tls.clone()).await) != newest {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newest certificate is not presented"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before every reload goes on.
    v.msg("m1", "after the reloads", Some(&conv)).await;
    assert_eq!(v.expect("ack").await["seq"], 2);

    // A renewal gone wrong (a key that is not PEM): the old certificate stays.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    gw.sighup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        presented_leaf(&tls_connect(addr, tls.clone()).await),
        newest
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_certificate_stops_the_start_with_the_configuration_exit_code() {
    let dir = temp_dir("tls-bad");
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let out = std::process::Command::new(switchboard_test_support::process::bin_path("gateway"))
        .args(["--listen", "127.0.0.1:0", "--bridge", "off", "--tls-listen"])
        .arg(free_addr())
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("tls_cert"), "{stderr}");
    // Half a configuration is refused too.
    let out = std::process::Command::new(switchboard_test_support::process::bin_path("gateway"))
        .args(["--listen", "127.0.0.1:0", "--bridge", "off", "--tls-listen"])
        .arg(free_addr())
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_listen"));
    let _ = std::fs::remove_dir_all(&dir);
}
