//! The bridge's HTTP API over TLS: health and the API over https with a certificate made in
//! the test (rcgen), plain HTTP on the port told so and closed, and the certificate
//! reloaded on SIGHUP. A real bridge process and a real TLS client.

use std::sync::Arc;
use std::time::Duration;
use switchboard_test_support::tls::TestCa;
use switchboard_test_support::{temp_dir, Bridge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

async fn get(addr: &str, tls: Arc<rustls::ClientConfig>, path: &str) -> (String, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("a TLS handshake");
    let leaf = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    (String::from_utf8_lossy(&answer).into_owned(), leaf)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_over_https_with_a_reloadable_certificate() {
    let dir = temp_dir("bridge-https");
    let ca = TestCa::new();
    let first = ca.leaf("first");
    let (cert, key) = first.write(&dir, &ca);
    let bridge = Bridge::builder(&dir)
        .args(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .start();
    let addr = bridge.http.clone().expect("the https address is printed");
    let tls = ca.client_config();

    let (answer, leaf) = get(&addr, tls.clone(), "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(leaf, first.der);
    let (answer, _) = get(&addr, tls.clone(), "/api/v1/openapi.json").await;
    assert!(answer.contains("\"openapi\""), "{answer:.300}");
    let (answer, _) = get(&addr, tls.clone(), "/console/").await;
    assert!(answer.contains("Switchboard console"), "{answer:.300}");

    // Plain HTTP on the https port.
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), plain.read_to_string(&mut answer))
        .await
        .expect("closed")
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("TLS"),
        "{answer}"
    );

    // Renewed on disk, SIGHUP: the next handshakes present the new certificate.
    let second = ca.leaf("second");
    second.write(&dir, &ca);
    bridge.signal("HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, leaf) = get(&addr, tls.clone(), "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        if leaf == second.der {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_key_without_a_certificate_is_refused_at_start() {
    let dir = temp_dir("bridge-https-bad");
    let out = Bridge::builder(&dir)
        .args(&["--tls-key", "/nonexistent/key.pem"])
        .command()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
    let _ = std::fs::remove_dir_all(&dir);
}
