//! Faults with real processes: the bridge or the gateway killed with SIGKILL, PostgreSQL
//! stopped and started again, Redis gone. After each: every acked message is stored exactly
//! once, seqs only increase, and with no gap unless the gateway itself crashed (then they
//! skip past its seq lease: docs/protocol.md, "Seqs").

use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard_test_support::{
    eventually_async, free_port, temp_dir, Bridge, Client, Gateway, RedisProc, TIMEOUT,
};

/// Sends each cid (if not already acked) and waits until every one is acked, resending the
/// ones refused with `overloaded`. Returns cid -> seq for all acks seen.
async fn send_until_acked(
    c: &mut Client,
    cids: &[String],
    conv: Option<&str>,
    acked: &mut HashMap<String, u64>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    for cid in cids.iter().filter(|c| !acked.contains_key(*c)) {
        c.msg(cid, &format!("body of {cid}"), conv).await;
    }
    while cids.iter().any(|c| !acked.contains_key(c)) {
        assert!(
            Instant::now() < deadline,
            "not acked in time: {:?}",
            cids.iter()
                .filter(|c| !acked.contains_key(*c))
                .collect::<Vec<_>>()
        );
        let f = c.expect_any(&["ack", "error"]).await;
        let cid = f["cid"].as_str().unwrap_or_default().to_string();
        if f["type"] == "ack" {
            let seq = f["seq"].as_u64().unwrap();
            if let Some(old) = acked.insert(cid.clone(), seq) {
                assert_eq!(old, seq, "{cid} acked twice with different seqs");
            }
        } else {
            assert_eq!(f["code"], "overloaded", "{f}");
            // A deliberate back-off before resending, as a client told `overloaded` does.
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.msg(&cid, &format!("body of {cid}"), conv).await;
        }
    }
}

/// Every stored message in an embedded store: (conv, seq, sender, cid), in order.
fn stored_messages(dir: &std::path::Path) -> Vec<(i64, i64, String, String)> {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("switchboard.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut q = db
        .prepare("SELECT conv, seq, sender, cid FROM messages ORDER BY conv, seq")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The store holds each acked cid exactly once, at its acked seq, and seqs that only
/// increase: 1..=n with no gap when `dense` (no gateway crashed).
fn assert_stored(dir: &std::path::Path, acked: &HashMap<String, u64>, dense: bool) {
    let rows = stored_messages(dir);
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    if dense {
        assert_eq!(
            seqs,
            (1..=rows.len() as i64).collect::<Vec<_>>(),
            "gap or duplicate seq"
        );
    } else {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "duplicate seq");
    }
    let by_cid: HashMap<&str, i64> = rows
        .iter()
        .filter(|r| r.2.starts_with('v'))
        .map(|r| (r.3.as_str(), r.1))
        .collect();
    assert_eq!(
        by_cid.len(),
        rows.iter().filter(|r| r.2.starts_with('v')).count(),
        "a cid stored twice"
    );
    for (cid, seq) in acked {
        assert_eq!(
            by_cid.get(cid.as_str()).copied(),
            Some(*seq as i64),
            "acked {cid} at {seq} is not stored there"
        );
    }
}

fn cids(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

const FAST: [&str; 4] = ["--rate-per-sec", "100000", "--rate-burst", "100000"];

/// A gateway in `dir` using `bridge`, with rate limits out of the way.
fn gateway_on(bridge: &Bridge, dir: &std::path::Path) -> Gateway {
    Gateway::builder()
        .data_dir(dir)
        .args(&bridge.gateway_args())
        .args(&FAST)
        .start()
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_killed_under_load_and_restarted_loses_nothing_acked() {
    let dir = temp_dir("fault-bridge");
    let mut bridge = Bridge::start(&dir);
    let gw = gateway_on(&bridge, &dir);
    let mut agent = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    let mut acked = HashMap::new();
    send_until_acked(
        &mut v,
        &cids("a", 0..200),
        None,
        &mut acked,
        Duration::from_secs(30),
    )
    .await;
    agent.assigned().await;

    bridge.kill9();
    // Sent while the bridge is down: relayed at once, acked only after it is back.
    let during = cids("b", 0..200);
    for cid in &during {
        v.msg(cid, "while down", None).await;
    }
    let first_live = agent.expect("msg").await;
    assert!(
        first_live["seq"].as_u64().is_some(),
        "delivery does not wait for storage"
    );
    let early = tokio::time::timeout(Duration::from_millis(500), v.expect("ack")).await;
    assert!(
        early.is_err(),
        "nothing can be acked while the bridge is down: {early:?}"
    );
    bridge.restart();
    send_until_acked(&mut v, &during, None, &mut acked, Duration::from_secs(30)).await;
    send_until_acked(
        &mut v,
        &cids("c", 0..100),
        None,
        &mut acked,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(acked.len(), 500);
    assert_stored(&dir, &acked, true);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_killed_clients_resend_and_resume_and_nothing_is_lost_or_doubled() {
    let dir = temp_dir("fault-gateway");
    let bridge = Bridge::start(&dir);
    let mut gw = gateway_on(&bridge, &dir);
    let mut v = gw.visitor().await;
    let token = v.welcome["token"].as_str().unwrap().to_string();
    let mut acked = HashMap::new();
    send_until_acked(
        &mut v,
        &cids("a", 0..100),
        None,
        &mut acked,
        Duration::from_secs(30),
    )
    .await;
    let conv = {
        v.msg("probe", "x", None).await;
        let ack = v.expect("ack").await;
        acked.insert("probe".into(), ack["seq"].as_u64().unwrap());
        ack["conv"].as_str().unwrap().to_string()
    };
    // A burst, then the gateway dies with some of it unacked.
    let burst = cids("b", 0..300);
    for cid in &burst {
        v.msg(cid, "burst", None).await;
    }
    while acked.len() < 150 {
        let f = v.expect("ack").await;
        acked.insert(
            f["cid"].as_str().unwrap().into(),
            f["seq"].as_u64().unwrap(),
        );
    }
    gw.kill9();
    drop(v);

    let gw2 = gateway_on(&bridge, &dir);
    let mut v = Client::connect(&gw2.url(&format!("/ws/visitor?token={token}")))
        .await
        .unwrap();
    let last = *acked.values().max().unwrap();
    v.send(json!({"type":"resume","conv":conv,"last_seq":last}))
        .await;
    let resumed = v.expect("resumed").await;
    assert!(resumed["last_seq"].as_u64().unwrap() >= last, "{resumed}");
    // Resend everything not acked: resends of stored ones get their original seq.
    send_until_acked(
        &mut v,
        &burst,
        Some(&conv),
        &mut acked,
        Duration::from_secs(30),
    )
    .await;
    send_until_acked(
        &mut v,
        &cids("c", 0..50),
        Some(&conv),
        &mut acked,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(acked.len(), 451);
    assert_stored(&dir, &acked, false);
    // An agent arriving now gets the conversation back and all of it in order: every
    // stored seq, once (past the crash they skip the dead gateway's lease).
    let mut stored: Vec<u64> = acked.values().copied().collect();
    stored.sort_unstable();
    assert_eq!(
        stored[..150],
        (1..=150).collect::<Vec<_>>()[..],
        "before the crash"
    );
    let mut agent = gw2.agent("ann").await;
    agent.assigned().await;
    for seq in stored {
        let m = agent.expect("msg").await;
        assert_eq!(m["seq"], seq);
    }
    drop(gw2);
    let _ = std::fs::remove_dir_all(dir);
}

/// A PostgreSQL server owned by one test: its own data directory and port, run as the
/// `postgres` user (PostgreSQL refuses root), stopped when dropped.
struct OwnPostgres {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn as_postgres(&self, args: &[&str]) -> std::process::Output {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(args[0]))
            .args(&args[1..])
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn init() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql are required")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = std::path::PathBuf::from(format!(
            "/tmp/sb-pg-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let port = free_port();
        let pg = OwnPostgres { dir, bin, port };
        pg.as_postgres(&[
            "initdb",
            "-D",
            pg.data().to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        pg.start();
        pg
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.join("data")
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            self.data().to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "start",
        ]);
    }

    fn stop(&self) {
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            self.data().to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pg_messages(url: &str) -> Vec<(i64, String)> {
    let out = std::process::Command::new("psql")
        .args([
            url,
            "-Atc",
            "SELECT seq, cid FROM messages ORDER BY conv, seq",
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, c) = l.split_once('|').unwrap();
            (s.parse().unwrap(), c.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_for_a_while_delays_acks_and_the_bridge_catches_up() {
    let pg = OwnPostgres::init();
    let dir = temp_dir("fault-pg");
    let url = pg.url();
    let bridge = Bridge::builder(&dir).env("DATABASE_URL", &url).start();
    let gw = gateway_on(&bridge, &dir);
    let mut v = gw.visitor().await;
    let mut acked = HashMap::new();
    send_until_acked(
        &mut v,
        &cids("a", 0..100),
        None,
        &mut acked,
        Duration::from_secs(30),
    )
    .await;

    pg.stop();
    let during = cids("b", 0..100);
    for cid in &during {
        v.msg(cid, "while the database is down", None).await;
    }
    // A second in which no ack may come (time let pass on purpose).
    let early = tokio::time::timeout(Duration::from_secs(1), v.expect("ack")).await;
    assert!(early.is_err(), "no ack while PostgreSQL is down");
    // The bridge says so in its metrics, once a write has failed.
    eventually_async(
        "the bridge to report bridge_store_up 0",
        TIMEOUT,
        || bridge.metrics(),
        |m| m.contains("bridge_store_up 0"),
    )
    .await;
    // And so does the gateway: acks waiting on storage (published once a second).
    eventually_async(
        "chat_storage_unconfirmed >= 1",
        TIMEOUT,
        || gw.metric("chat_storage_unconfirmed", &[]),
        |n| *n >= 1.0,
    )
    .await;
    pg.start();
    send_until_acked(&mut v, &during, None, &mut acked, Duration::from_secs(60)).await;
    let rows = pg_messages(&url);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    for (cid, seq) in &acked {
        assert!(rows.contains(&(*seq as i64, cid.clone())), "{cid} at {seq}");
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_gone_history_and_resume_come_from_the_database() {
    let dir = temp_dir("fault-redis");
    // Answering before the bridge starts, or the bridge caches only from when it connects
    // (retrying each second) and the cache hit below would depend on timing.
    let mut redis = RedisProc::start();
    let redis_url = redis.url();
    let bridge = Bridge::builder(&dir).env("REDIS_URL", &redis_url).start();
    let gw = gateway_on(&bridge, &dir);
    let mut v = gw.visitor().await;
    let mut acked = HashMap::new();
    send_until_acked(
        &mut v,
        &cids("a", 0..400),
        None,
        &mut acked,
        Duration::from_secs(30),
    )
    .await;
    // History beyond the window works with Redis up (served from the cache)...
    v.send(json!({"type":"history","before":50,"limit":10}))
        .await;
    let h = v.expect("history").await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 10);
    assert_eq!(h["messages"][0]["seq"], 40);
    let metrics = bridge.metrics().0;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bridge_cache_hits_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // ...and with Redis gone (from the database).
    redis.kill();
    v.send(json!({"type":"history","before":30,"limit":5}))
        .await;
    let h = v.expect("history").await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![25, 26, 27, 28, 29]);
    // A new agent resumes the whole conversation, reaching past the window into the store.
    let mut agent = gw.agent("ann").await;
    agent.assigned().await;
    for seq in 1..=400u64 {
        assert_eq!(agent.expect("msg").await["seq"], seq);
    }
    assert_eq!(agent.expect("resumed").await["complete"], true);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}
