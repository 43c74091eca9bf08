//! Bad input, limits, deadlines and shutdown, against the real binary: each gets its
//! documented answer and the gateway goes on serving everyone else.

use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_test_support::{temp_dir, Client, Ended, Gateway, Raw, TIMEOUT};

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_connection_carries_on() {
    let gw = Gateway::start(&[]);
    let mut v = gw.visitor().await;
    let cases = [
        ("{not json", "bad_json"),
        ("[1,2,3]", "bad_json"),
        (r#"{"type":"launch"}"#, "unknown_type"),
        (r#"{"body":"x"}"#, "unknown_type"),
        (r#"{"type":"msg","body":"x"}"#, "missing_field"),
        (r#"{"type":"msg","cid":"c1"}"#, "missing_field"),
        (r#"{"type":"msg","cid":7,"body":"x"}"#, "invalid_field"),
        (
            r#"{"type":"msg","cid":"c1","body":"x","conv":"nope"}"#,
            "invalid_field",
        ),
        (r#"{"type":"read","seq":1}"#, "no_conversation"),
        (
            r#"{"type":"resume","conv":"c0000000000000001","last_seq":0}"#,
            "not_in_conversation",
        ),
    ];
    for (text, code) in cases {
        v.send_text(text).await;
        let e = v.recv().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{text}"
        );
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    v.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2, 3,
    ]))
    .await
    .unwrap();
    assert_eq!(v.recv().await["code"], "binary_unsupported");
    // Errors carry the cid when one was readable.
    v.send_text(r#"{"type":"msg","cid":"abc","body":""}"#).await;
    assert_eq!(
        v.recv().await,
        json!({"type":"error","code":"invalid_field","message":"`body` must be a non-empty string","cid":"abc"})
    );
    // Still serving.
    v.msg("ok", "still here", None).await;
    assert_eq!(v.expect("ack").await["seq"], 1);
}

use futures_util::SinkExt;

#[tokio::test]
async fn oversized_and_invalid_utf8_messages_close_with_their_codes_and_others_are_unaffected() {
    let gw = Gateway::start(&["--max-message-bytes", "4096", "--max-outbox-bytes", "65536"]);
    let mut bystander = gw.visitor().await;
    let mut big = gw.visitor().await;
    let body = "x".repeat(5000);
    let _ = big
        .ws
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"type":"msg","cid":"1","body":body}).to_string(),
        ))
        .await;
    assert_eq!(big.ended().await, Ended::Close(1009));

    let mut raw = Raw::upgrade(gw.addr, "/ws/visitor");
    raw.frame(0x1, &[0xff, 0xfe, 0xfd]);
    assert_eq!(raw.read_until_close(), Some(1007));

    let mut raw = Raw::upgrade(gw.addr, "/ws/visitor");
    raw.s
        .write_all(&[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .unwrap(); // unmasked
    assert_eq!(raw.read_until_close(), Some(1002));

    bystander.msg("m", "fine", None).await;
    assert_eq!(bystander.expect("ack").await["seq"], 1);
    assert!(gw.metric("chat_connections_closed_total", &["reason=\"too_big\""]) >= 1.0);
}

use std::io::Write;

#[tokio::test]
async fn handshakes_are_refused_with_http_errors_never_a_connection() {
    let gw = Gateway::start(&["--handshake-timeout-ms", "500"]);
    let refused = |q: &str| {
        let url = gw.url(q);
        async move {
            Client::connect(&url)
                .await
                .err()
                .expect("refused")
                .to_string()
        }
    };
    assert!(refused("/ws/agent").await.contains("401"));
    assert!(refused("/ws/agent?token=sb1.a.YW5u.9999999999.AAAA")
        .await
        .contains("401"));
    let expired = {
        // A token signed with the right secret but already expired is refused too.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["token", "--agent", "ann", "--ttl", "1s", "--data-dir"])
            .arg(&gw.data_dir)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // A deliberate pause: the token's one second of validity has to run out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(refused(&format!("/ws/agent?token={expired}"))
        .await
        .contains("401"));
    assert!(refused("/ws/visitor?client=fridge").await.contains("400"));
    assert!(refused("/nowhere").await.contains("404"));
    assert_eq!(gw.http_get("/ws/visitor").0, 426);
    assert_eq!(gw.http_get("/healthz"), (200, "ok\n".into()));

    // A header larger than the cap: 431.
    let mut r = Raw::connect(gw.addr);
    let head = r.request(&format!(
        "GET /ws/visitor HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    ));
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // Slowloris: an unfinished head is cut off at the deadline with 408.
    let mut r = Raw::connect(gw.addr);
    let start = Instant::now();
    let head = r.request("GET /ws/visitor HTTP/1.1\r\nHost: x\r\n");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(start.elapsed() < Duration::from_secs(3));
    // Garbage: 400.
    let mut r = Raw::connect(gw.addr);
    assert!(r
        .request("\x16\x03\x01 not http\r\n\r\n")
        .starts_with("HTTP/1.1 400"));
    assert!(gw.metric("chat_handshakes_refused_total", &["status=\"401\""]) >= 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_origin_allowlist_refuses_other_sites_but_not_apps_without_origin() {
    let dir = temp_dir("origins");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, "allowed_origins = [\"https://shop.example\"]\n").unwrap();
    let gw = Gateway::start(&["--config", config.to_str().unwrap()]);
    let upgrade = |origin: &str| {
        let mut r = Raw::connect(gw.addr);
        r.request(&format!(
            "GET /ws/visitor?client=web HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
        ))
    };
    assert!(upgrade("Origin: https://evil.example\r\n").starts_with("HTTP/1.1 403"));
    assert!(upgrade("Origin: https://shop.example\r\n").starts_with("HTTP/1.1 101"));
    // A mobile app or bot sends no Origin: its token (here: a new visitor) decides.
    assert!(upgrade("").starts_with("HTTP/1.1 101"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_pinged_then_closed_with_4000_while_active_ones_stay() {
    let gw = Gateway::start(&["--idle-web-s", "2", "--idle-api-s", "300"]);
    // A raw client that never answers pings.
    let mut silent = Raw::upgrade(gw.addr, "/ws/visitor?client=web");
    // A real client that answers pings (tungstenite replies while reading).
    let mut lively = gw.visitor().await;
    #[allow(unused_mut)]
    let api = Raw::upgrade(gw.addr, "/ws/visitor?client=api");
    // Keep the lively client reading (and so answering pings) in its own task.
    let lively_task = tokio::spawn(async move {
        let alive = tokio::time::timeout(Duration::from_secs(5), lively.recv()).await;
        assert!(
            alive.is_err(),
            "no frame expected, the connection just stays open: {alive:?}"
        );
        lively.msg("m", "still here", None).await;
        assert_eq!(lively.expect("ack").await["seq"], 1);
    });
    let start = Instant::now();
    let code = tokio::task::spawn_blocking(move || silent.read_until_close())
        .await
        .unwrap();
    assert_eq!(code, Some(4000));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    lively_task.await.unwrap();
    assert!(
        gw.metric(
            "chat_connections_closed_total",
            &["reason=\"idle_timeout\""]
        ) >= 1.0
    );
    drop(api);
}

#[tokio::test]
async fn rate_limited_frames_are_refused_and_not_acked() {
    let gw = Gateway::start(&["--rate-per-sec", "1", "--rate-burst", "3"]);
    let mut v = gw.visitor().await;
    for i in 0..6 {
        v.msg(&format!("m{i}"), "x", None).await;
    }
    let mut acks = 0;
    let mut limited = Vec::new();
    for _ in 0..6 {
        let f = v.expect_any(&["ack", "error"]).await;
        if f["type"] == "ack" {
            acks += 1;
        } else {
            assert_eq!(f["code"], "rate_limited");
            limited.push(f["cid"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        (acks, limited),
        (3, vec!["m3".to_string(), "m4".into(), "m5".into()])
    );
}

#[tokio::test]
async fn a_reader_that_stalls_is_closed_as_a_slow_consumer_without_hurting_the_shard() {
    let gw = Gateway::start(&[
        "--max-outbox-bytes",
        "65536",
        "--rate-per-sec",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let mut agent = gw.agent("ann").await;
    // The visitor opens a conversation, then stops reading.
    let mut stalled = Raw::upgrade(gw.addr, "/ws/visitor");
    stalled.frame(
        0x1,
        json!({"type":"msg","cid":"1","body":"hi"})
            .to_string()
            .as_bytes(),
    );
    let conv = agent.assigned().await["conv"].as_str().unwrap().to_string();
    agent.expect("msg").await;
    let body = "z".repeat(4000);
    let mut closed = false;
    for i in 0..20_000 {
        agent.msg(&format!("a{i}"), &body, Some(&conv)).await;
        let ack = agent.expect("ack").await;
        assert_eq!(ack["seq"], i + 2);
        if i % 100 == 0
            && gw.metric(
                "chat_connections_closed_total",
                &["reason=\"slow_consumer\""],
            ) >= 1.0
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the stalled reader was never closed");
    // The agent, on whichever shard, is still served.
    let mut v2 = gw.visitor().await;
    v2.msg("m", "hello", None).await;
    assert_eq!(v2.expect("ack").await["seq"], 1);
    // The stalled socket ends (its buffered frames, then no more).
    stalled
        .s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stalled.read_until_close();
}

#[tokio::test]
async fn sigterm_flushes_closes_everyone_with_1001_and_exits() {
    let mut gw = Gateway::start(&["--shutdown-grace-s", "5"]);
    let mut agent = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    v.msg("m", "hello", None).await;
    v.expect("ack").await;
    agent.assigned().await;
    agent.expect("msg").await;
    gw.sigterm();
    assert_eq!(v.ended().await, Ended::Close(1001));
    assert_eq!(agent.ended().await, Ended::Close(1001));
    let status = gw.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn at_the_open_files_limit_the_gateway_backs_off_and_keeps_serving() {
    // 64 descriptors: a few connections fill it.
    let gw = Gateway::builder()
        .shards(1)
        .wrap(&["prlimit", "--nofile=64:64"])
        .start();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            Client::connect(&gw.url("/ws/visitor")),
        )
        .await
        {
            Ok(Ok(c)) => held.push(c),
            _ => refused += 1,
        }
    }
    assert!(refused > 0, "the limit was never reached");
    assert!(held.len() > 20, "only {} connections held", held.len());
    drop(held);
    // Serving again, once the gateway has closed the dropped connections and accepts
    // again: until then the new connection waits in the listen backlog.
    let mut v = tokio::time::timeout(TIMEOUT, gw.visitor())
        .await
        .expect("a new connection is served again");
    v.msg("m", "after", None).await;
    assert_eq!(v.expect("ack").await["seq"], 1);
    assert!(gw.metric("chat_accept_errors_total", &["kind=\"emfile\""]) >= 1.0);
}
