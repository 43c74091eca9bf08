//! The bridge link cannot wedge, and no seq ever names two messages: real gateway, real
//! storage bridge, real WebSocket clients.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use switchboard_test_support::{temp_dir, Bridge, Client, Gateway};

const FAST: [&str; 4] = ["--rate-per-sec", "100000", "--rate-burst", "100000"];

/// A body of about `n` bytes that says which message it is.
fn body(i: usize, n: usize) -> String {
    let head = format!("message {i} ");
    format!("{head}{}", "é".repeat((n - head.len()) / 2))
}

/// Issue 10's reproduction: a conversation of 300 messages of 60 KB (18 MB, more than one
/// frame of the bridge link), then a fresh connection of the same visitor resumes it from
/// the start. Every message comes back, in order, over as many pages as it takes, without
/// the client being closed as a slow consumer; the shard's link to storage carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_of_more_than_a_link_frame_comes_back_whole_in_pages() {
    const N: usize = 300;
    let gw = Gateway::start(&FAST);
    let mut v = gw.visitor().await;
    let token = v.welcome["token"].as_str().unwrap().to_string();
    let mut conv: Option<String> = None;
    // As a client does: a message refused with `overloaded` (a burst past the seq lease
    // the store has confirmed so far) is sent again with the same cid.
    for i in 1..=N {
        loop {
            v.msg(&format!("c{i}"), &body(i, 60_000), conv.as_deref())
                .await;
            let f = v.expect_any(&["ack", "error"]).await;
            if f["type"] == "ack" {
                assert_eq!(f["seq"], i as u64);
                conv = Some(f["conv"].as_str().unwrap().to_string());
                break;
            }
            assert_eq!(f["code"], "overloaded", "{f}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let conv = conv.unwrap();
    drop(v);

    let mut again = Client::connect(&gw.url(&format!("/ws/visitor?client=web&token={token}")))
        .await
        .unwrap();
    again
        .send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    for i in 1..=N {
        let m = again.recv().await;
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_u64()),
            (Some("msg"), Some(i as u64)),
            "message {i}"
        );
        assert_eq!(m["body"].as_str().unwrap(), body(i, 60_000));
    }
    let resumed = again.recv().await;
    assert_eq!(
        resumed,
        json!({"type":"resumed","conv":conv,"last_seq":N,"replayed":N,"complete":true})
    );
    // Persistence on that shard carries on: a new message is stored (acked) at once.
    again.msg("after", "still here", Some(&conv)).await;
    let ack = again.expect("ack").await;
    assert_eq!(ack["seq"], N as u64 + 1);
    // History pages are bounded too: 200 asked, fewer given, and it says there is more.
    again
        .send(json!({"type":"history","conv":conv,"limit":200}))
        .await;
    let page = again.expect("history").await;
    let got = page["messages"].as_array().unwrap();
    assert!(!got.is_empty() && got.len() < 200, "{} messages", got.len());
    assert_eq!(page["complete"], false);
    assert_eq!(got.last().unwrap()["seq"], N as u64 + 1);
    assert_eq!(gw.metric("chat_bridge_up", &[]), gw.shards as f64);
}

/// What each party was shown: (conv, seq) -> (sender, cid, body).
type Views = BTreeMap<(String, u64), Vec<(String, String, String, &'static str)>>;

fn saw(views: &mut Views, who: &'static str, m: &Value) {
    let key = (
        m["conv"].as_str().unwrap().to_string(),
        m["seq"].as_u64().unwrap(),
    );
    let what = (
        m["from"].as_str().unwrap().to_string(),
        m["cid"].as_str().unwrap().to_string(),
        m["body"].as_str().unwrap().to_string(),
        who,
    );
    views.entry(key).or_default().push(what);
}

/// Messages stored in the embedded store: (conv as text, seq, sender, cid, body).
fn stored(dir: &std::path::Path) -> Vec<(String, u64, String, String, String)> {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("switchboard.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut q = db
        .prepare("SELECT conv, seq, sender, cid, body FROM messages ORDER BY conv, seq")
        .unwrap();
    q.query_map([], |r| {
        let conv: i64 = r.get(0)?;
        Ok((
            switchboard_protocol::ConvId(conv as u64).to_string(),
            r.get::<_, i64>(1)? as u64,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Issue 10's crash: messages relayed to the agent but never stored (the bridge drops
/// them, as a crash would lose them), the gateway SIGKILLed, restarted; the visitor sends a
/// new message and resends the lost ones, both resume. No (conv, seq) names two different
/// messages in any client's view or in the store.
#[tokio::test(flavor = "multi_thread")]
async fn a_seq_shown_before_a_crash_never_names_another_message() {
    let dir = temp_dir("seq-crash");
    let hold = dir.join("drop-persists");
    let hold_s = hold.to_str().unwrap().to_string();
    let bridge = Bridge::builder(&dir)
        .args(&["--fault-drop-persists-while", &hold_s])
        .start();
    let gateway = || {
        Gateway::builder()
            .data_dir(&dir)
            .args(&bridge.gateway_args())
            .args(&FAST)
            .start()
    };
    let mut gw = gateway();
    let mut views = Views::new();

    let mut v = gw.visitor().await;
    let token = v.welcome["token"].as_str().unwrap().to_string();
    let mut agent = gw.agent("ann").await;
    v.msg("m1", "stored one", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_string();
    agent.assigned().await;
    saw(&mut views, "agent", &agent.expect("msg").await);
    for i in 2..=3 {
        v.msg(&format!("m{i}"), &format!("stored {i}"), None).await;
        v.expect("ack").await;
        saw(&mut views, "agent", &agent.expect("msg").await);
    }
    agent.expect("resumed").await;

    // From now on nothing is stored: relayed, shown, never acked.
    std::fs::write(&hold, b"").unwrap();
    for i in 1..=3 {
        v.msg(&format!("h{i}"), &format!("lost {i}"), None).await;
        saw(&mut views, "agent", &agent.expect("msg").await);
    }
    agent
        .send(json!({"type":"msg","conv":conv,"cid":"a1","body":"lost reply"}))
        .await;
    saw(&mut views, "visitor", &v.expect("msg").await);
    let agent_last = views.keys().map(|k| k.1).max().unwrap();
    gw.kill9();
    drop((v, agent));
    std::fs::remove_file(&hold).unwrap();

    let gw = gateway();
    let mut v = Client::connect(&gw.url(&format!("/ws/visitor?client=web&token={token}")))
        .await
        .unwrap();
    // Something new first: before issue 10 it took the seq the agent saw for "lost 1".
    v.msg("n1", "after the crash", Some(&conv)).await;
    let mut acks: HashMap<String, u64> = HashMap::new();
    let ack = v.expect("ack").await;
    acks.insert("n1".into(), ack["seq"].as_u64().unwrap());
    for i in 1..=3 {
        v.msg(&format!("h{i}"), &format!("lost {i}"), Some(&conv))
            .await;
        let ack = v.expect("ack").await;
        acks.insert(
            ack["cid"].as_str().unwrap().into(),
            ack["seq"].as_u64().unwrap(),
        );
    }
    assert!(
        acks["n1"] > agent_last,
        "a new message at {} reuses a seq shown before the crash (up to {agent_last})",
        acks["n1"]
    );
    // The agent comes back and resumes from the last seq it saw.
    let mut agent = gw.agent("ann").await;
    agent.expect("assigned").await;
    agent
        .send(json!({"type":"resume","conv":conv,"last_seq":agent_last}))
        .await;
    loop {
        let f = agent.expect_any(&["msg", "resumed"]).await;
        if f["type"] == "resumed" {
            assert_eq!(f["complete"], true, "{f}");
            break;
        }
        saw(&mut views, "agent", &f);
    }
    // The visitor's own view: its acked messages under their seqs.
    for (cid, seq) in &acks {
        let body = match cid.as_str() {
            "n1" => "after the crash".to_string(),
            h => format!("lost {}", &h[1..]),
        };
        let from = v.id();
        saw(
            &mut views,
            "visitor",
            &json!({"conv":conv,"seq":seq,"from":from,"cid":cid,"body":body}),
        );
    }
    for (conv, seq, from, cid, body) in stored(&dir) {
        saw(
            &mut views,
            "store",
            &json!({"conv":conv,"seq":seq,"from":from,"cid":cid,"body":body}),
        );
    }
    for (key, seen) in &views {
        let first = &seen[0];
        for other in &seen[1..] {
            assert_eq!(
                (&first.0, &first.1, &first.2),
                (&other.0, &other.1, &other.2),
                "{key:?} names two messages: {} saw {first:?}, {} saw {other:?}",
                first.3,
                other.3
            );
        }
    }
    // And everything acked is stored, each once.
    let stored_cids: Vec<String> = stored(&dir).into_iter().map(|m| m.3).collect();
    for cid in ["m1", "m2", "m3", "n1", "h1", "h2", "h3"] {
        assert_eq!(stored_cids.iter().filter(|c| *c == cid).count(), 1, "{cid}");
    }
    drop(gw);
    drop(bridge);
    let _ = std::fs::remove_dir_all(dir);
}

/// A clean stop (SIGTERM) hands unused seqs back: after the restart a conversation goes on
/// at the next seq, with no skip.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_clean_restart_seqs_go_on_without_a_skip() {
    let dir = temp_dir("seq-clean");
    let gateway = || Gateway::builder().data_dir(&dir).args(&FAST).start();
    let mut gw = gateway();
    let mut v = gw.visitor().await;
    let token = v.welcome["token"].as_str().unwrap().to_string();
    v.msg("m1", "one", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_string();
    for i in 2..=5 {
        v.msg(&format!("m{i}"), "more", Some(&conv)).await;
        assert_eq!(v.expect("ack").await["seq"], i);
    }
    drop(v);
    gw.sigterm();
    assert!(gw.wait_exit(std::time::Duration::from_secs(30)).success());
    let gw = gateway();
    let mut v = Client::connect(&gw.url(&format!("/ws/visitor?client=web&token={token}")))
        .await
        .unwrap();
    v.msg("m6", "after a clean restart", Some(&conv)).await;
    assert_eq!(v.expect("ack").await["seq"], 6);
    drop(gw);
    let _ = std::fs::remove_dir_all(dir);
}
