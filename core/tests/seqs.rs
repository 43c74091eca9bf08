//! Issue 10 in the core: no seq anyone saw is ever used for another message (seq leases),
//! and a replay or a history page is bounded however large the backlog (pages paced by the
//! reader). Shards and the store model are those of `durable.rs`.

mod node;

use node::{cfg, msg, visitor, Client, MemStore, Node, LEASE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchboard_core::CoreConfig;
use switchboard_protocol::{AgentId, ParticipantId};

/// Visitor `v` opens a conversation and writes `count` messages of `body` in it (cids m1,
/// m2, ...), reading what comes back after each: the conversation and each message's ack.
fn write(n: &mut Node, v: Client, count: u64, body: &str) -> (String, Vec<Value>) {
    let mut conv: Option<String> = None;
    let mut acks = Vec::new();
    for i in 1..=count {
        let mut m = msg(&format!("m{i}"), body);
        if let Some(c) = &conv {
            m["conv"] = c.clone().into();
        }
        n.send(v, m);
        let ack = n.of_type(v, "ack").remove(0);
        conv = Some(ack["conv"].as_str().unwrap().to_string());
        acks.push(ack);
    }
    (conv.expect("count > 0"), acks)
}

fn agent(name: &str) -> ParticipantId {
    ParticipantId::Agent(AgentId::new(name).unwrap())
}

/// Notes every (seq, cid) in `frames` (messages shown, acks given) in `seen`, failing if a
/// seq was seen before with another cid.
fn note(seen: &mut BTreeMap<u64, String>, frames: &[Value]) {
    for f in frames {
        if f["type"] == "msg" || f["type"] == "ack" {
            let seq = f["seq"].as_u64().unwrap();
            let cid = f["cid"].as_str().unwrap().to_string();
            let before = seen.entry(seq).or_insert_with(|| cid.clone());
            assert_eq!(*before, cid, "seq {seq} names two messages");
        }
    }
}

/// Stored, then shown but never stored (the store holds the requests back, and the node
/// "crashes": a new one starts on the store as it is). For many mixes of how much was
/// stored and shown, the messages after the restart never take a seq anyone saw.
#[test]
fn after_a_crash_no_seq_anyone_saw_names_another_message() {
    for (stored, shown) in [(0, 1), (1, 5), (10, 60), (70, 1), (100, 100), (300, 200)] {
        let mut n = Node::new(2, cfg(), MemStore::default());
        let v = n.connect(1, visitor(1));
        let a = n.connect(0, agent("ann"));
        n.frames(v);
        let mut seen = BTreeMap::new();
        let mut conv = String::new();
        for i in 0..stored {
            let mut m = msg(&format!("s{i}"), "stored");
            if i > 0 {
                m["conv"] = conv.clone().into();
            }
            n.send(v, m);
            let f = n.frames(v);
            let ack = f.iter().find(|x| x["type"] == "ack").expect("stored");
            conv = ack["conv"].as_str().unwrap().to_string();
            note(&mut seen, &f);
        }
        if stored > 0 {
            let f = n.frames(a);
            let f: Vec<Value> = f.into_iter().filter(|x| x["type"] == "assigned").collect();
            assert_eq!(f.len(), 1);
            n.send(a, json!({"type":"resume","conv":conv,"last_seq":0}));
            note(&mut seen, &n.frames(a));
        }
        n.hold = true;
        let mut refused = 0;
        for i in 0..shown {
            let mut m = msg(&format!("h{i}"), "shown, never stored");
            if stored > 0 {
                m["conv"] = conv.clone().into();
            }
            n.send(v, m);
            let f = n.frames(v);
            refused += f.iter().filter(|x| x["code"] == "overloaded").count();
            note(&mut seen, &f);
        }
        note(&mut seen, &n.frames(a));
        // The store is away: a conversation goes on only as far as its lease.
        assert!(seen.keys().max().copied().unwrap_or(0) <= stored as u64 + LEASE);
        if shown > LEASE as usize {
            assert!(refused > 0, "past the lease, messages wait for the store");
        }
        if stored == 0 {
            // Never stored: the conversation does not exist; nobody can write in it again.
            assert!(n.store.convs.is_empty());
            continue;
        }
        let shown_max = *seen.keys().max().unwrap();
        assert!(
            shown_max > stored as u64,
            "{stored}/{shown}: nothing shown past the stored ones"
        );
        let mut after = Node::new(2, cfg(), n.store.clone());
        let v = after.connect_as(1, visitor(1), true);
        after.send(v, msg("n1", "after the crash"));
        let f = after.frames(v);
        let ack = f.iter().find(|x| x["type"] == "ack").expect("acked");
        assert!(
            ack["seq"].as_u64().unwrap() > shown_max,
            "{stored}/{shown}: a new message at {} below a seq shown ({shown_max})",
            ack["seq"]
        );
        note(&mut seen, &f);
        // Resends of what was lost are stored under new seqs too.
        for i in 0..3.min(shown) {
            after.send(
                v,
                json!({"type":"msg","cid":format!("h{i}"),"body":"again","conv":conv}),
            );
            let f = after.frames(v);
            let ack = f.iter().find(|x| x["type"] == "ack").unwrap();
            assert!(ack["seq"].as_u64().unwrap() > shown_max);
        }
    }
}

/// A long conversation extends its lease as it goes, with the store keeping up: it is
/// never refused, and the lease in the store stays ahead of every seq handed out.
#[test]
fn leases_are_extended_ahead_of_need_while_the_store_keeps_up() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    let v = n.connect(1, visitor(1));
    n.send(v, msg("m0", "first"));
    let conv = n.of_type(v, "ack")[0]["conv"].as_str().unwrap().to_string();
    for i in 1..1000 {
        n.send(
            v,
            json!({"type":"msg","cid":format!("m{i}"),"body":"b","conv":conv}),
        );
        let f = n.frames(v);
        assert_eq!(f[0]["type"], "ack", "{:?}", f[0]);
        assert_eq!(f[0]["seq"], i + 1);
    }
    let lease = n.store.leases.values().copied().max().unwrap();
    assert!(
        (1000..=1000 + LEASE).contains(&lease),
        "lease {lease} after 1,000 messages"
    );
}

fn big_cfg() -> CoreConfig {
    CoreConfig {
        max_outbox_bytes: 256 * 1024,
        window: 8,
        ..cfg()
    }
}

/// Issue 10's reproduction in the core: 300 messages of 60 KB, resumed from the start by a
/// new connection. The replay comes in pages of a quarter of the outbox (from the store,
/// then the window), each asked when the last was read; all of it, in order, once.
#[test]
fn a_long_backlog_is_replayed_whole_in_pages_that_fit_the_outbox() {
    let mut n = Node::new(2, big_cfg(), MemStore::default());
    let v = n.connect(1, visitor(1));
    let body = "x".repeat(60_000);
    let (conv, _) = write(&mut n, v, 300, &body);
    let again = n.connect_as(0, visitor(1), true);
    n.frames(again);
    n.send(again, json!({"type":"resume","conv":conv,"last_seq":0}));
    // Read page by page, checking the outbox never holds more than it may.
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let io = n.shards[again.shard].io(again.key).unwrap();
        assert!(io.outbox.queued_bytes() <= 256 * 1024 / 4 + 70_000);
        assert_eq!(io.close, None, "not closed as a slow consumer");
        while let Some(f) = io.outbox.pop() {
            got.push(serde_json::from_slice::<Value>(&f).unwrap());
        }
        if !io.drain_wanted {
            break;
        }
        pages += 1;
        n.shards[again.shard].on_drained(again.key, n.now);
        n.settle();
    }
    let seqs: Vec<u64> = got
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    assert_eq!(
        got.last().unwrap(),
        &json!({"type":"resumed","conv":conv,"last_seq":300,"replayed":300,"complete":true})
    );
    assert!(pages >= 50, "{pages} pages");
    // Live from then on.
    n.send(
        v,
        json!({"type":"msg","cid":"live","body":"now","conv":conv}),
    );
    let live = n.of_type(again, "msg");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["seq"], 301);
    // A history request of 200 such messages is cut to what fits, and says there is more.
    n.send(again, json!({"type":"history","conv":conv,"limit":200}));
    let h = n.of_type(again, "history");
    let items = h[0]["messages"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() < 10, "{}", items.len());
    assert_eq!(items.last().unwrap()["seq"], 301);
    assert_eq!(h[0]["complete"], false);
}

/// A store read that fails in the middle of a paged replay does not stall it: the rest of
/// the window follows and `resumed` says it is not complete.
#[test]
fn a_replay_whose_store_read_fails_ends_incomplete_rather_than_never() {
    let mut n = Node::new(2, big_cfg(), MemStore::default());
    let v = n.connect(1, visitor(1));
    let (conv, _) = write(&mut n, v, 30, "one");
    n.store.fail_reads = true;
    let again = n.connect_as(0, visitor(1), true);
    n.frames(again);
    n.send(again, json!({"type":"resume","conv":conv,"last_seq":0}));
    let f = n.frames(again);
    let seqs: Vec<u64> = f
        .iter()
        .filter(|x| x["type"] == "msg")
        .map(|x| x["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (23..=30).collect::<Vec<_>>(), "the window of 8");
    assert_eq!(f.last().unwrap()["complete"], false);
}

/// A clean stop hands the unused seqs back: the next start goes on at the next seq, with
/// no skip; a message arriving after the hand-back is refused, not sequenced.
#[test]
fn after_a_clean_stop_seqs_go_on_without_a_skip() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    let v = n.connect(1, visitor(1));
    n.frames(v);
    let (conv, acks) = write(&mut n, v, 70, "one");
    for (i, ack) in acks.iter().enumerate().skip(1) {
        assert_eq!(ack["seq"], i as u64 + 1);
    }
    for s in &mut n.shards {
        s.release_leases();
    }
    n.settle();
    n.send(v, json!({"type":"msg","cid":"late","body":"b","conv":conv}));
    let f = n.frames(v);
    assert_eq!(f[0]["code"], "overloaded", "{f:?}");
    assert_eq!(n.store.leases.values().copied().max(), Some(70));

    let mut after = Node::new(2, cfg(), n.store.clone());
    let v = after.connect_as(1, visitor(1), true);
    after.send(v, msg("m71", "after a clean restart"));
    let ack = after.of_type(v, "ack");
    assert_eq!(ack[0]["seq"], 71);
}

/// A connection that resumes a conversation again while the first replay is still paging
/// gets one replay (of the second resume): every message once, in order, then live.
#[test]
fn a_second_resume_mid_replay_replaces_the_first() {
    let mut n = Node::new(2, big_cfg(), MemStore::default());
    let v = n.connect(1, visitor(1));
    let body = "y".repeat(30_000);
    let (conv, _) = write(&mut n, v, 40, &body);
    let again = n.connect_as(0, visitor(1), true);
    n.frames(again);
    n.send(again, json!({"type":"resume","conv":conv,"last_seq":0}));
    // The first page is there; the client resumes again before reading on.
    n.send(again, json!({"type":"resume","conv":conv,"last_seq":0}));
    n.send(
        v,
        json!({"type":"msg","cid":"live","body":"now","conv":conv}),
    );
    let got = n.frames(again);
    let seqs: Vec<u64> = got
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    // Whatever of the first replay was already queued, then the second one, whole.
    let second: Vec<u64> = seqs[seqs.len() - 41..].to_vec();
    assert_eq!(second, (1..=41).collect::<Vec<_>>(), "{seqs:?}");
    let resumed: Vec<&Value> = got.iter().filter(|f| f["type"] == "resumed").collect();
    assert_eq!(resumed.len(), 1, "one replay ends");
    assert_eq!(resumed[0]["replayed"], 41);
}

/// Without a store, a resume reaching past the window says it is incomplete.
#[test]
fn without_a_store_a_resume_past_the_window_is_incomplete() {
    let mem = CoreConfig {
        durable: false,
        window: 4,
        rate_burst: 1e6,
        ..CoreConfig::default()
    };
    let mut n = Node::new(2, mem, MemStore::default());
    let v = n.connect(1, visitor(1));
    n.frames(v);
    let (conv, _) = write(&mut n, v, 10, "one");
    n.frames(v);
    n.send(v, json!({"type":"resume","conv":conv,"last_seq":0}));
    let f = n.frames(v);
    let resumed = f.iter().find(|x| x["type"] == "resumed").unwrap();
    assert_eq!(resumed["replayed"], 4);
    assert_eq!(resumed["complete"], false);
    n.send(v, json!({"type":"resume","conv":conv,"last_seq":6}));
    let f = n.frames(v);
    let resumed = f.iter().find(|x| x["type"] == "resumed").unwrap();
    assert_eq!(resumed["complete"], true);
}

/// A conversation closed while a long replay is paging: the replay still ends (from the
/// store), with `resumed` and then the `conversation_closed` a resume of a closed
/// conversation gets.
#[test]
fn a_conversation_closed_mid_replay_still_ends_its_replay() {
    let mut n = Node::new(2, big_cfg(), MemStore::default());
    let ann = n.connect(0, agent("ann"));
    let v = n.connect(1, visitor(1));
    let body = "z".repeat(30_000);
    let (conv, _) = write(&mut n, v, 30, &body);
    assert_eq!(n.of_type(ann, "assigned").len(), 1);
    let again = n.connect_as(0, visitor(1), true);
    n.frames(again);
    n.send(again, json!({"type":"resume","conv":conv,"last_seq":0}));
    // One page read, then the agent closes the conversation.
    let io = n.shards[again.shard].io(again.key).unwrap();
    let mut got = Vec::new();
    while let Some(f) = io.outbox.pop() {
        got.push(serde_json::from_slice::<Value>(&f).unwrap());
    }
    n.send(ann, json!({"type":"close","conv":conv}));
    got.extend(n.frames(again));
    let seqs: Vec<u64> = got
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    let tail: Vec<&str> = got[got.len() - 2..]
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(tail, ["resumed", "error"], "{:?}", &got[got.len() - 2..]);
    assert_eq!(got.last().unwrap()["code"], "conversation_closed");
}
