//! Several gateway nodes as one service (docs/cluster.md), with real processes: three
//! gateways (each with its storage bridge) on different ports, one PostgreSQL schema and
//! one Redis between them, and `loadtest chat` spreading visitors and agents over the three.
//! One node is SIGKILLed mid-run, and Redis is killed and started again (empty): every
//! message acked is stored once and reaches its agent. The same over a Redis Cluster of
//! three masters.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_test_support::process::bin_path;
use switchboard_test_support::{
    eventually, free_addr, pg, temp_dir, Gateway, RedisCluster, RedisProc, TIMEOUT,
};

/// Three nodes sharing `database` and the Redis at `redis` (`cluster`: a Redis Cluster).
fn nodes(database: &str, redis: &str, cluster: bool, secret: &Path) -> Vec<Gateway> {
    let nodes: Vec<Gateway> = (1..=3)
        .map(|i| {
            let mut args = vec![
                "--cluster-redis".to_string(),
                redis.to_string(),
                "--node-id".into(),
                format!("n{i}"),
                "--secret-file".into(),
                secret.display().to_string(),
            ];
            if cluster {
                args.push("--cluster-redis-cluster".into());
            }
            Gateway::builder()
                .shards(1)
                .env("DATABASE_URL", database)
                .bridge_http(&free_addr())
                .args(&args)
                .start()
        })
        .collect();
    for n in &nodes {
        eventually(
            "every node to see the three",
            TIMEOUT,
            || n.metric("chat_cluster_nodes", &[]),
            |v| *v == 3.0,
        );
    }
    nodes
}

fn secret_file() -> std::path::PathBuf {
    let dir = temp_dir("cluster-secret");
    let path = dir.join("secret");
    std::fs::write(&path, "a cluster-wide token secret of enough length").unwrap();
    path
}

/// `loadtest chat` over the nodes' URLs, in the background; its JSON result lands in `json`.
fn chat(nodes: &[Gateway], secret: &Path, seconds: u64, json: &Path) -> std::process::Child {
    let urls: Vec<String> = nodes.iter().map(|g| g.url("")).collect();
    Command::new(bin_path("loadtest"))
        .args(["chat", "--url", &urls.join(",")])
        .args(["--secret-file", secret.to_str().unwrap()])
        .args(["--agents", "3", "--visitors", "12", "--rate", "5"])
        .args(["--duration", &seconds.to_string(), "--drain", "30"])
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadtest (cargo build --workspace)")
}

fn finish(run: std::process::Child, json: &Path) -> Value {
    let out = run.wait_with_output().unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "loadtest failed");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Nothing acked was lost or stored twice, and it all reached the agents.
fn assert_whole(r: &Value, database: &str) {
    assert!(r["sent"].as_u64().unwrap() >= 300, "{r}");
    assert_eq!(r["acked"], r["sent"], "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicated"], 0, "{r}");
    assert_eq!(r["undelivered"], 0, "{r}");
    let twice = pg::query(
        database,
        "SELECT count(*) FROM (SELECT conv, sender, cid FROM messages
             GROUP BY conv, sender, cid HAVING count(*) > 1) t",
    );
    assert_eq!(twice, ["0"], "a message stored twice");
    let stored = pg::query(
        database,
        "SELECT count(*) FROM messages WHERE sender LIKE 'v%'",
    );
    assert_eq!(stored[0], r["sent"].to_string(), "stored visitor messages");
}

#[test]
fn three_nodes_ride_through_a_node_kill_and_a_redis_restart() {
    let database = pg::fresh_schema();
    let mut redis = RedisProc::start();
    let secret = secret_file();
    let mut nodes = nodes(&database, &redis.url(), false, &secret);
    let json = temp_dir("cluster-run").join("chat.json");
    let start = Instant::now();
    let run = chat(&nodes, &secret, 14, &json);

    // Deliberate pauses: each fault has to fall in the middle of the run.
    sleep_until(start + Duration::from_secs(4));
    nodes[2].kill9();
    sleep_until(start + Duration::from_secs(9));
    redis.kill();
    eventually(
        "a node to say it lost Redis",
        TIMEOUT,
        || nodes[0].http_get("/healthz"),
        |(status, body)| *status == 200 && body.starts_with("degraded"),
    );
    sleep_until(start + Duration::from_secs(12));
    redis.run();
    let r = finish(run, &json);
    assert!(
        r["reconnects"].as_u64().unwrap() >= 4,
        "the killed node's clients came back elsewhere: {r}"
    );
    assert_whole(&r, &database);
    // Redis is back: the survivors say so (at their next heartbeat) and see each other.
    for n in &nodes[..2] {
        eventually(
            "a survivor healthy again",
            TIMEOUT,
            || n.http_get("/healthz"),
            |h| *h == (200, "ok\n".to_string()),
        );
        assert_eq!(n.metric("chat_cluster_nodes", &[]), 2.0);
    }
}

#[test]
fn three_nodes_on_a_redis_cluster_of_three_masters() {
    let database = pg::fresh_schema();
    let redis = RedisCluster::start(3);
    let secret = secret_file();
    let nodes = nodes(&database, &redis.urls(), true, &secret);
    let json = temp_dir("cluster-run").join("chat.json");
    let r = finish(chat(&nodes, &secret, 6, &json), &json);
    assert_whole(&r, &database);
    // Messages did cross nodes.
    let relayed: f64 = nodes
        .iter()
        .map(|n| {
            let bridge = n.bridge_http.clone().unwrap();
            switchboard_test_support::Metrics::scrape(&bridge)
                .value("bridge_cluster_relayed_in_total", &[])
        })
        .sum();
    assert!(relayed > 0.0, "nothing crossed nodes");
    // The membership hash and the streams of the nodes that were sent to, each on the
    // master owning its slot (wherever the hash put them).
    let keys: Vec<String> = redis.nodes.iter().flat_map(|r| r.keys("sbc:*")).collect();
    assert!(keys.iter().any(|k| k == "sbc:nodes"), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("sbc:relay:")), "{keys:?}");
}
