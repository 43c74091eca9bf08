//! Durability in the core: acks wait for the store, resends are recognised across a
//! restart, resume and history reach into the store. The store here is an in-memory model
//! answering the bridge protocol (the real bridge has its own tests); shards and their
//! traffic are as in `cluster.rs`.

mod node;

use node::{cfg, msg, visitor, MemStore, Node, LEASE};
use serde_json::{json, Value};
use switchboard_core::CoreConfig;
use switchboard_protocol::{AgentId, ParticipantId};

#[test]
fn acks_wait_for_the_store_and_resends_before_it_answers_wait_too() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    let v = n.connect(1, visitor(1));
    n.frames(v);
    n.hold = true;
    n.send(v, msg("m1", "hi"));
    n.send(v, msg("m1", "hi again"));
    assert!(
        n.of_type(v, "ack").is_empty(),
        "no ack before the store confirms"
    );
    assert_eq!(
        n.shards.iter().map(|s| s.stats().unconfirmed).sum::<u64>(),
        1
    );
    n.release();
    let acks = n.of_type(v, "ack");
    assert_eq!(
        acks.iter()
            .map(|a| a["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 1]
    );
    assert_eq!(n.store.messages.len(), 1);
}

#[test]
fn past_the_unconfirmed_limit_new_messages_are_refused_as_overloaded() {
    let mut n = Node::new(
        1,
        CoreConfig {
            max_unconfirmed: 3,
            ..cfg()
        },
        MemStore::default(),
    );
    let v = n.connect(0, visitor(1));
    n.frames(v);
    n.hold = true;
    for i in 0..5 {
        n.send(v, msg(&format!("m{i}"), "x"));
    }
    let errors = n.of_type(v, "error");
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (errors[0]["code"].as_str(), errors[0]["cid"].as_str()),
        (Some("overloaded"), Some("m3"))
    );
    n.release();
    assert_eq!(n.of_type(v, "ack").len(), 3);
    n.send(v, msg("m3", "x"));
    assert_eq!(
        n.of_type(v, "ack")[0]["seq"],
        4,
        "accepted once storage caught up"
    );
}

/// A gateway restart: new shards, same store. Seq continues, an acked message resent by a
/// client is recognised, an unassigned conversation goes back in the queue, and resume
/// reaches back into the store past the (small) window.
#[test]
fn after_a_restart_conversations_come_back_from_the_store() {
    let mut before = Node::new(2, cfg(), MemStore::default());
    let v = before.connect(1, visitor(5));
    before.frames(v);
    for i in 1..=10 {
        before.send(v, msg(&format!("m{i}"), &format!("body {i}")));
    }
    let conv = before.of_type(v, "ack")[0]["conv"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(before.store.messages.len(), 10);

    let mut after = Node::new(2, cfg(), before.store.clone());
    let a = after.connect(0, ParticipantId::Agent(AgentId::new("ann").unwrap()));
    // The unassigned conversation was listed at start, queued again, and went to the agent
    // who came online.
    let assigned: Vec<Value> = after
        .frames(a)
        .into_iter()
        .filter(|f| f["type"] == "assigned")
        .collect();
    assert_eq!(assigned[0]["conv"], conv.as_str());
    let v = after.connect(1, visitor(5));
    after.frames(v);
    // A resend of an acked message: same seq, nothing stored twice.
    after.send(
        v,
        json!({"type":"msg","cid":"m10","body":"body 10","conv":conv}),
    );
    let f = after.frames(v);
    let ack = f.iter().find(|x| x["type"] == "ack").unwrap();
    assert_eq!(ack["seq"], 10);
    assert!(
        after.of_type(a, "assigned").is_empty(),
        "not assigned twice"
    );
    // New messages continue the sequence above every seq that may have been shown before
    // the restart: the conversation's lease (docs/protocol.md, "Seqs").
    after.send(
        v,
        json!({"type":"msg","cid":"m11","body":"new","conv":conv}),
    );
    assert_eq!(after.of_type(v, "ack")[0]["seq"], LEASE + 1);
    // The agent resumes from the start: 1-7 from the store, 8-10 and the new one from the
    // window of 4.
    after.send(a, json!({"type":"resume","conv":conv,"last_seq":0}));
    let f = after.frames(a);
    let seqs: Vec<u64> = f
        .iter()
        .filter(|x| x["type"] == "msg")
        .map(|x| x["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=10).chain([LEASE + 1]).collect::<Vec<_>>());
    let resumed = f.last().unwrap();
    assert_eq!(
        (
            resumed["type"].as_str(),
            resumed["complete"].as_bool(),
            resumed["last_seq"].as_u64()
        ),
        (Some("resumed"), Some(true), Some(LEASE + 1))
    );
    assert_eq!(after.store.messages.len(), 11);
}

#[test]
fn history_pages_through_window_and_store() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    let v = n.connect(1, visitor(5));
    for i in 1..=12 {
        n.send(v, msg(&format!("m{i}"), &format!("b{i}")));
    }
    n.frames(v);
    n.send(v, json!({"type":"history","limit":3}));
    let h = n.of_type(v, "history").remove(0);
    let seqs = |h: &Value| {
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (seqs(&h), h["complete"].as_bool()),
        (vec![10, 11, 12], Some(false))
    );
    n.send(v, json!({"type":"history","before":10,"limit":5}));
    let h = n.of_type(v, "history").remove(0);
    assert_eq!(
        seqs(&h),
        vec![5, 6, 7, 8, 9],
        "crosses from the store into the window"
    );
    assert_eq!(h["messages"][0]["body"], "b5");
    n.send(v, json!({"type":"history","before":3,"limit":50}));
    let h = n.of_type(v, "history").remove(0);
    assert_eq!(
        (seqs(&h), h["complete"].as_bool()),
        (vec![1, 2], Some(true))
    );
    // Strangers get nothing.
    let s = n.connect(0, visitor(6));
    n.frames(s);
    let conv = h["conv"].as_str().unwrap();
    n.send(s, json!({"type":"history","conv":conv}));
    assert_eq!(n.of_type(s, "error")[0]["code"], "not_in_conversation");
}

#[test]
fn frames_for_an_unknown_conversation_are_refused_after_asking_the_store() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    let v = n.connect(0, visitor(1));
    n.frames(v);
    n.send(
        v,
        json!({"type":"msg","cid":"x","body":"y","conv":"c00000000000000aa"}),
    );
    assert_eq!(n.of_type(v, "error")[0]["code"], "not_in_conversation");
    n.send(
        v,
        json!({"type":"resume","conv":"c00000000000000aa","last_seq":0}),
    );
    assert_eq!(n.of_type(v, "error")[0]["code"], "not_in_conversation");
}

/// After a restart the dispatcher lists open conversations from the store: an agent who
/// comes back is told of its conversations, and a waiting visitor gets the next agent,
/// before any visitor reconnects.
#[test]
fn after_a_restart_agents_get_their_conversations_back_without_visitors_returning() {
    let mut before = Node::new(
        2,
        CoreConfig {
            agent_capacity: 1,
            ..cfg()
        },
        MemStore::default(),
    );
    let ann = before.connect(0, ParticipantId::Agent(AgentId::new("ann").unwrap()));
    let v1 = before.connect(1, visitor(1));
    let v2 = before.connect(1, visitor(2));
    before.send(v1, msg("m1", "mine"));
    before.send(v2, msg("m1", "waiting"));
    let conv1 = before.of_type(v1, "ack")[0]["conv"]
        .as_str()
        .unwrap()
        .to_string();
    let conv2 = before.of_type(v2, "ack")[0]["conv"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(before.of_type(ann, "assigned")[0]["conv"], conv1.as_str());

    let mut after = Node::new(
        2,
        CoreConfig {
            agent_capacity: 1,
            ..cfg()
        },
        before.store.clone(),
    );
    after.settle();
    let ann = after.connect(1, ParticipantId::Agent(AgentId::new("ann").unwrap()));
    let told: Vec<String> = after
        .of_type(ann, "assigned")
        .iter()
        .map(|a| a["conv"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        told,
        vec![conv1.clone()],
        "ann has her conversation back, and is full"
    );
    let bob = after.connect(0, ParticipantId::Agent(AgentId::new("bob").unwrap()));
    assert_eq!(
        after.of_type(bob, "assigned")[0]["conv"],
        conv2.as_str(),
        "the waiting visitor got bob"
    );
    // When the visitor does come back, nothing is assigned twice.
    let v1 = after.connect(1, visitor(1));
    after.send(v1, json!({"type":"resume","conv":conv1,"last_seq":0}));
    assert!(after.of_type(bob, "assigned").is_empty());
}

#[test]
fn after_a_restart_a_conversation_nobody_touches_is_closed_one_idle_period_later() {
    let cfg = || CoreConfig {
        agent_capacity: 1,
        conversation_idle_close: Some(std::time::Duration::from_secs(60)),
        idle_web: std::time::Duration::from_secs(86_400),
        ..cfg()
    };
    let mut before = Node::new(2, cfg(), MemStore::default());
    let ann = before.connect(0, ParticipantId::Agent(AgentId::new("ann").unwrap()));
    let v1 = before.connect(1, visitor(1));
    let v2 = before.connect(1, visitor(2));
    before.send(v1, msg("m1", "mine"));
    before.send(v2, msg("m1", "waiting"));
    let conv2 = before.of_type(v2, "ack")[0]["conv"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(before.of_type(ann, "assigned").len(), 1);

    // The gateway restarts a minute later (the stored messages are a minute old).
    let mut after = Node::new(2, cfg(), before.store.clone());
    after.now.unix_ms += 60_000;
    after.settle();
    let ann = after.connect(0, ParticipantId::Agent(AgentId::new("ann").unwrap()));
    after.frames(ann);
    after.advance_s(30);
    // The waiting visitor comes back and writes: their conversation is active again.
    let v2 = after.connect(1, visitor(2));
    after.send(v2, json!({"type":"resume","conv":conv2,"last_seq":1}));
    after.send(v2, msg("m2", "still waiting"));
    assert_eq!(after.of_type(v2, "ack")[0]["conv"], conv2.as_str());
    after.advance_s(29);
    assert_eq!(after.store.convs.values().filter(|c| c.2).count(), 0);
    after.advance_s(2);
    // Nobody touched ann's conversation since the restart: closed one period after it.
    let closed: Vec<bool> = after.store.convs.values().map(|c| c.2).collect();
    assert_eq!(closed.iter().filter(|c| **c).count(), 1, "{closed:?}");
    assert_eq!(
        after.of_type(ann, "assigned")[0]["conv"],
        conv2.as_str(),
        "ann's place went to the waiting visitor"
    );
}

#[test]
fn after_a_restart_a_returning_visitor_is_put_back_in_its_stored_conversation() {
    let (before, conv) = visitor_opened_a_conversation(5);
    let mut after = Node::new(2, cfg(), before.store.clone());
    after.settle();
    let v = after.connect_as(0, visitor(5), true);
    after.send(v, msg("m2", "after it"));
    let frames = after.frames(v);
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(
        (ack["conv"].as_str(), ack["seq"].as_u64()),
        (Some(&*conv), Some(LEASE + 1))
    );
    assert!(frames
        .iter()
        .any(|f| f["type"] == "resumed" && f["last_seq"] == LEASE));
}

#[test]
fn just_after_a_restart_a_returning_visitor_waits_for_the_listing_of_open_conversations() {
    let (before, conv) = visitor_opened_a_conversation(6);
    // The bridge has not answered anything yet when the visitor is back.
    let mut after = Node::new(2, cfg(), before.store.clone());
    after.hold = true;
    after.settle();
    let v = after.connect_as(1, visitor(6), true);
    after.frames(v);
    after.send(v, msg("m2", "hello again"));
    assert!(after.frames(v).is_empty(), "waiting for the listing");
    after.release();
    let frames = after.frames(v);
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(
        (ack["conv"].as_str(), ack["seq"].as_u64()),
        (Some(&*conv), Some(LEASE + 1))
    );

    // If the listing does not come (the bridge is down), the wait ends after 5 s and the
    // visitor's message opens a conversation rather than waiting on.
    let mut stuck = Node::new(2, cfg(), before.store.clone());
    stuck.hold = true;
    stuck.settle();
    let v = stuck.connect_as(0, visitor(6), true);
    stuck.frames(v);
    stuck.send(v, msg("m3", "anyone?"));
    stuck.advance_s(4);
    assert!(stuck.frames(v).is_empty());
    stuck.advance_s(2);
    stuck.release();
    let frames = stuck.frames(v);
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap();
    assert_ne!(ack["conv"].as_str(), Some(&*conv));
}

/// A node where visitor `id` (on shard 1) opened a conversation, stored; and its id.
fn visitor_opened_a_conversation(id: u64) -> (Node, String) {
    let mut node = Node::new(2, cfg(), MemStore::default());
    let v = node.connect(1, visitor(id));
    node.send(v, msg("m1", "before the restart"));
    let conv = node.of_type(v, "ack")[0]["conv"]
        .as_str()
        .unwrap()
        .to_string();
    (node, conv)
}

#[test]
fn a_visitor_says_where_it_is_and_rates_the_conversation_once_closed() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    let ann = n.connect(0, ParticipantId::Agent(AgentId::new("ann").unwrap()));
    let v = n.connect(1, visitor(1));
    n.frames(v);
    n.send(
        v,
        json!({"type":"context","page":"https://shop.example/cart","lang":"fr-FR"}),
    );
    n.send(v, msg("m1", "my cart is empty"));
    let assigned = n.of_type(ann, "assigned");
    assert_eq!(
        assigned[0]["context"],
        json!({"page":"https://shop.example/cart","lang":"fr-FR"})
    );
    let conv = assigned[0]["conv"].as_str().unwrap().to_owned();
    // Not before it is closed, not by an agent, not out of range.
    n.send(v, json!({"type":"rate","conv":conv,"score":5}));
    assert_eq!(n.of_type(v, "error")[0]["code"], "invalid_field");
    n.send(ann, json!({"type":"rate","conv":conv,"score":5}));
    assert_eq!(n.of_type(ann, "error")[0]["code"], "forbidden");
    n.send(v, json!({"type":"rate","conv":conv,"score":9}));
    assert_eq!(n.of_type(v, "error")[0]["code"], "invalid_field");
    n.send(ann, json!({"type":"close","conv":conv}));
    n.send(
        v,
        json!({"type":"rate","conv":conv,"score":4,"comment":"quick"}),
    );
    let got = n.frames(v);
    let rated: Vec<Value> = got
        .iter()
        .filter(|f| f["type"] == "rated")
        .cloned()
        .collect();
    assert!(!rated.is_empty(), "{got:?}");
    assert_eq!(rated[0]["score"], 4);
    let id = switchboard_protocol::ConvId::parse(&conv).unwrap().0;
    assert_eq!(n.store.ratings.get(&id), Some(&4));
    // Another visitor may not rate it.
    let other = n.connect(1, visitor(2));
    n.frames(other);
    n.send(other, json!({"type":"rate","conv":conv,"score":1}));
    assert_eq!(n.of_type(other, "error")[0]["code"], "forbidden");
    assert_eq!(n.store.ratings.get(&id), Some(&4));
}

#[test]
fn an_assignment_not_answered_in_time_goes_to_the_next_agent() {
    let mut n = Node::new(
        2,
        CoreConfig {
            reroute_after: Some(std::time::Duration::from_secs(30)),
            ..cfg()
        },
        MemStore::default(),
    );
    let agent = |name: &str| ParticipantId::Agent(AgentId::new(name).unwrap());
    let ann = n.connect(0, agent("ann"));
    let bob = n.connect(1, agent("bob"));
    let v = n.connect(1, visitor(1));
    n.frames(v);
    n.send(v, msg("m1", "hello?"));
    let first = n.of_type(ann, "assigned");
    assert_eq!(first.len(), 1, "ann came first");
    // The bridge hears who is online (for the API's presence).
    assert_eq!(
        n.store.online.iter().collect::<Vec<_>>(),
        vec!["ann", "bob"]
    );
    let conv = first[0]["conv"].as_str().unwrap().to_owned();
    n.send(ann, json!({"type":"resume","conv":conv,"last_seq":0}));
    // Ann says nothing for 30 s: bob gets it, with the reason; ann and the visitor are told.
    n.advance_s(29);
    assert!(n.of_type(bob, "assigned").is_empty());
    n.advance_s(2);
    let second = n.of_type(bob, "assigned");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["conv"], conv.as_str());
    assert_eq!(
        second[0]["reason"],
        "transferred by ann: no answer within 30 s"
    );
    assert_eq!(n.of_type(ann, "transferred")[0]["from"], "ann");
    assert_eq!(n.of_type(v, "agent_joined")[1]["agent"], "bob");
    assert_eq!(n.shards[0].stats().rerouted, 1);
    // Bob answers: it stays with him however long it lasts.
    n.send(
        bob,
        json!({"type":"msg","conv":conv,"cid":"b1","body":"Hi, I am here."}),
    );
    n.advance_s(90);
    assert!(n.of_type(ann, "assigned").is_empty());
    assert_eq!(n.shards[0].stats().rerouted, 1);
    n.disconnect(ann);
    assert_eq!(n.store.online.iter().collect::<Vec<_>>(), vec!["bob"]);
}
