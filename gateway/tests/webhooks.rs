//! Webhooks end to end: a message in a conversation reaches a subscriber as a signed POST;
//! a receiver that fails first gets it again; one that never answers ends as a dead letter
//! in the API. Real gateway, bridge, clients and an HTTP receiver of the test's own.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_test_support::{free_addr, http, temp_dir, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the receiver got: (headers, body) per request.
type Got = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver that answers 500 to the first `fail` deliveries of `message` events, then 200.
async fn receiver(fail: usize) -> (String, Got) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Got = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if raw.len() < split + 4 + len {
                        continue;
                    }
                    let body =
                        String::from_utf8_lossy(&raw[split + 4..split + 4 + len]).into_owned();
                    let is_message = header(&head, "x-switchboard-event") == Some("message");
                    let n = {
                        let mut g = seen.lock().unwrap();
                        g.push((head, body));
                        g.iter()
                            .filter(|(h, _)| header(h, "x-switchboard-event") == Some("message"))
                            .count()
                    };
                    let n = if is_message { n } else { usize::MAX };
                    let status = if n <= fail {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = s
                        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                        .await;
                    return;
                }
            });
        }
    });
    (format!("http://{addr}/hooks"), got)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::trim))
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_reach_a_subscriber_signed_retried_and_dead_lettered() {
    let dir = temp_dir("webhooks");
    let api = free_addr();
    let gw = Gateway::builder()
        .data_dir(&dir)
        .bridge_http(&api)
        .env("SWITCHBOARD_WEBHOOK_ATTEMPTS", "3")
        .env("SWITCHBOARD_WEBHOOK_BACKOFF_MS", "50")
        .start();
    let bearer = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    let auth = [("Authorization", bearer.as_str())];
    // A receiver that fails once, and a URL where nothing listens.
    let (url, got) = receiver(1).await;
    let secret = "whsec-0123456789abcdef";
    let hook = |url: &str, events: Value| {
        let r = http::post(
            &api,
            "/api/v1/webhooks",
            &auth,
            &json!({"url": url, "secret": secret, "events": events}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        serde_json::from_slice::<Value>(&r.body).unwrap()
    };
    hook(&url, json!(["message", "conversation.opened"]));
    let dead = hook(
        &format!("http://{}/nobody", free_addr()),
        json!(["message"]),
    );
    let r = http::post(
        &api,
        "/api/v1/webhooks",
        &auth,
        &json!({"url":"ftp://x","secret":secret,"events":["message"]}).to_string(),
    );
    assert_eq!(r.status, 400);

    let mut v = gw.visitor().await;
    v.msg("m1", "hello webhooks", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_owned();
    // The message comes twice (a 500, then a 200), with one delivery id, signed.
    let started = Instant::now();
    let messages = loop {
        let g = got.lock().unwrap().clone();
        let m: Vec<(String, String)> = g
            .into_iter()
            .filter(|(h, _)| header(h, "x-switchboard-event") == Some("message"))
            .collect();
        if m.len() >= 2 {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "deliveries: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (head, body) = &messages[1];
    assert_eq!(
        header(head, "x-switchboard-delivery"),
        header(&messages[0].0, "x-switchboard-delivery")
    );
    let expected = format!(
        "sha256={}",
        switchboard_test_support::http::hmac_sha256_hex(secret, body.as_bytes())
    );
    assert_eq!(
        header(head, "x-switchboard-signature"),
        Some(expected.as_str())
    );
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["event"], "message");
    assert_eq!(event["data"]["conv"], conv.as_str());
    assert_eq!(event["data"]["body"], "hello webhooks");
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .any(|(h, _)| header(h, "x-switchboard-event") == Some("conversation.opened")));
    // The unreachable one: three attempts, then a dead letter with the body.
    let path = format!(
        "/api/v1/webhooks/{}/dead-letters",
        dead["id"].as_str().unwrap()
    );
    let started = Instant::now();
    let letters = loop {
        let r: Value = serde_json::from_slice(&http::get(&api, &path, &auth).body).unwrap();
        if !r["dead_letters"].as_array().unwrap().is_empty() {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no dead letter"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letter = &letters["dead_letters"][0];
    assert_eq!(
        (letter["event"].as_str(), letter["attempts"].as_i64()),
        (Some("message"), Some(3))
    );
    assert!(letter["body"].as_str().unwrap().contains("hello webhooks"));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
