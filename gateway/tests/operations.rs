//! What an operator sees: metrics, health, and clear CLI errors.

use std::process::Command;
use switchboard_test_support::{settled_async, Client, Gateway, Metrics, TIMEOUT};

#[tokio::test]
async fn metrics_show_connections_by_role_client_and_shard_and_a_bucketed_histogram() {
    let gw = Gateway::start(&[]);
    let _agent = gw.agent("ann").await;
    let mut v = Client::connect(&gw.url("/ws/visitor?client=mobile"))
        .await
        .unwrap();
    v.msg("m", "hi", None).await;
    v.expect("ack").await;
    // Gauges and counters are published once a second, by each shard on its own tick:
    // scrape until every shard has published them (if that never happens, the assertions
    // below say what is missing, on the last scrape).
    let published = |m: &Metrics| {
        m.value("chat_active_connections", &[]) == 2.0
            && m.value("chat_messages_relayed_total", &[]) == 1.0
            && m.value("chat_agents_online", &[]) == 1.0
            && m.value("chat_open_conversations", &[]) == 1.0
    };
    let (status, body) = settled_async(
        TIMEOUT,
        || gw.http_get("/metrics"),
        |(_, body)| published(&Metrics(body.clone())),
    )
    .await;
    assert_eq!(status, 200);
    let m = Metrics(body.clone());
    assert_eq!(
        m.value(
            "chat_active_connections",
            &["role=\"visitor\"", "client=\"mobile\""]
        ),
        1.0,
        "{body}"
    );
    assert_eq!(
        m.value(
            "chat_active_connections",
            &["role=\"agent\"", "client=\"web\""]
        ),
        1.0
    );
    assert_eq!(
        m.value("chat_active_connections", &["shard=\"0\""])
            + m.value("chat_active_connections", &["shard=\"1\""]),
        2.0
    );
    assert!(
        body.contains("chat_message_process_seconds_bucket{"),
        "histogram with buckets, not a summary"
    );
    assert!(m.value("chat_message_process_seconds_count", &[]) >= 1.0);
    assert_eq!(m.value("chat_messages_relayed_total", &[]), 1.0);
    assert_eq!(m.value("chat_agents_online", &[]), 1.0);
    assert_eq!(m.value("chat_open_conversations", &[]), 1.0);
    assert!(body.contains("# TYPE chat_queue_length gauge"));
}

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_configuration_is_refused_with_exit_64_and_names_the_key() {
    let out = gateway(&["--idle-web-s", "1", "config"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("idle_web_s"),
        "{out:?}"
    );

    let dir = std::env::temp_dir().join(format!("sb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nshardz = 3\n").unwrap();
    let out = gateway(&["--config", file.to_str().unwrap(), "config"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shardz"),
        "{out:?}"
    );

    let out = gateway(&[
        "token",
        "--agent",
        "has spaces",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid agent id"));
    let out = gateway(&["token", "--agent", "ann", "--ttl", "5 weeks"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects the argument");

    // A file config is applied, and flags win over it.
    std::fs::write(&file, "agent_capacity = 3\nidle_api_s = 99\n").unwrap();
    let out = gateway(&[
        "--config",
        file.to_str().unwrap(),
        "--idle-api-s",
        "77",
        "config",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("agent_capacity = 3") && text.contains("idle_api_s = 77"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let gw = Gateway::start(&[]);
    // A second gateway on the first one's port is refused (SO_REUSEPORT would allow it).
    let out = gateway(&[
        "--listen",
        &gw.addr.to_string(),
        "--data-dir",
        gw.data_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Address already in use"),
        "{out:?}"
    );
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = gateway(&[
        "--listen",
        &blocker.local_addr().unwrap().to_string(),
        "--data-dir",
        gw.data_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on"),
        "{out:?}"
    );
}
