//! Faults with real processes: the bridge or the gateway killed with SIGKILL, PostgreSQL
//! stopped and started again, Redis gone. After each: every acked message is stored exactly
//! once, with no gaps in seq.

mod common;

use common::{stored_messages, temp_dir, BridgeProc, Client, Gateway};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.msg(&cid, &format!("body of {cid}"), conv).await;
        }
    }
}

/// The store holds each acked cid exactly once, at its acked seq, and seqs 1..=n with no gap.
fn assert_stored(dir: &std::path::Path, acked: &HashMap<String, u64>) {
    let rows = stored_messages(dir);
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(
        seqs,
        (1..=rows.len() as i64).collect::<Vec<_>>(),
        "gap or duplicate seq"
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn bridge_killed_under_load_and_restarted_loses_nothing_acked() {
    let dir = temp_dir("fault-bridge");
    let mut bridge = BridgeProc::start(&dir, &[]);
    let mut args: Vec<String> = bridge.gateway_args();
    args.extend(FAST.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start_at(&dir, 2, &args, |_| {});
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
    assert_stored(&dir, &acked);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_killed_clients_resend_and_resume_and_nothing_is_lost_or_doubled() {
    let dir = temp_dir("fault-gateway");
    let bridge = BridgeProc::start(&dir, &[]);
    let mut args: Vec<String> = bridge.gateway_args();
    args.extend(FAST.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gw = Gateway::start_at(&dir, 2, &args, |_| {});
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

    let gw2 = Gateway::start_at(&dir, 2, &args, |_| {});
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
    assert_stored(&dir, &acked);
    // An agent arriving now gets the conversation back and all of it in order.
    let mut agent = gw2.agent("ann").await;
    agent.assigned().await;
    for seq in 1..=451u64 {
        let m = agent.expect("msg").await;
        assert_eq!(m["seq"], seq);
    }
    drop(gw2);
    let _ = std::fs::remove_dir_all(dir);
}
