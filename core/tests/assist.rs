//! The AI layer's decisions in the core: the bot has a conversation and answers in it, hands
//! it to a human with its reason, drafts for agents, and jumps an angry visitor ahead in the
//! queue. The bridge's decisions are injected as the bridge would send them
//! (`BridgeMsg::Assist`); shards, store and traffic are as in `durable.rs`.

mod node;

use node::{cfg, msg, visitor, MemStore, Node};
use serde_json::Value;
use switchboard_core::routing::home_shard;
use switchboard_core::CoreConfig;
use switchboard_protocol::bridge::{Assist, BotMode, BridgeMsg};
use switchboard_protocol::server::BOT_ID;
use switchboard_protocol::{AgentId, ConvId, ParticipantId};

fn ann() -> ParticipantId {
    ParticipantId::Agent(AgentId::new("ann").unwrap())
}

fn conv_of(frames: &[Value]) -> ConvId {
    let id = frames
        .iter()
        .find_map(|f| f["conv"].as_str())
        .expect("a frame naming the conversation");
    ConvId::parse(id).unwrap()
}

/// The bridge tells the conversation's home shard what the AI layer decided.
fn assist(n: &mut Node, conv: ConvId, seq: u64, a: Assist) {
    let home = home_shard(conv, n.shards.len() as u32) as usize;
    let now = n.now;
    n.shards[home].on_bridge(
        BridgeMsg::Assist {
            conv,
            seq,
            assist: a,
        },
        now,
    );
    n.settle();
}

fn welcome(n: &mut Node, mode: BotMode) {
    let now = n.now;
    n.shards[0].bridge_welcomed(mode, now);
    n.settle();
}

#[test]
fn the_bot_answers_first_then_hands_over_with_its_reason_and_drafts_for_the_agent() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    welcome(&mut n, BotMode::BotFirst);
    let a = n.connect(0, ann());
    n.frames(a);
    let v = n.connect(1, visitor(1));
    n.frames(v);
    n.send(v, msg("m1", "how do refunds work?"));
    let f = n.frames(v);
    let conv = conv_of(&f);
    assert!(
        f.iter()
            .any(|x| x["type"] == "bot_joined" && x["bot"] == BOT_ID),
        "the visitor learns it talks to a bot: {f:?}"
    );
    assert!(
        n.of_type(a, "assigned").is_empty(),
        "bot first: ann is free but does not get it"
    );

    // The knowledge base answers: a `msg` from the bot, stored and sequenced.
    let answer = Assist {
        reply: Some("Refunds take 5 days.".into()),
        by: "kb".into(),
        labels: [("intent".to_owned(), "refund".to_owned())].into(),
        ..Assist::default()
    };
    assist(&mut n, conv, 1, answer.clone());
    let bot: Vec<Value> = n.of_type(v, "msg");
    assert_eq!(bot.len(), 1);
    assert_eq!(
        (bot[0]["from"].as_str(), bot[0]["seq"].as_u64()),
        (Some(BOT_ID), Some(2))
    );
    assert_eq!(bot[0]["body"], "Refunds take 5 days.");
    assert!(n
        .store
        .messages
        .values()
        .any(|m| m.sender == BOT_ID && m.seq == 2));
    // The same decision again (a resend after the link came back): not posted twice.
    assist(&mut n, conv, 1, answer);
    assert!(n.of_type(v, "msg").is_empty());

    // "转人工": the bot hands over; ann gets it with the reason and the labels so far.
    n.send(
        v,
        serde_json::json!({"type":"msg","cid":"m2","body":"转人工","conv":conv.to_string()}),
    );
    n.frames(v);
    assist(
        &mut n,
        conv,
        3,
        Assist {
            handoff: Some("intent: ask_human".into()),
            priority: Some(1),
            labels: [("intent".to_owned(), "ask_human".to_owned())].into(),
            ..Assist::default()
        },
    );
    let assigned = n.of_type(a, "assigned");
    assert_eq!(assigned.len(), 1, "{assigned:?}");
    assert_eq!(assigned[0]["reason"], "intent: ask_human");
    assert_eq!(assigned[0]["labels"]["intent"], "ask_human");
    assert_eq!(assigned[0]["priority"], 1);
    assert!(n
        .of_type(v, "agent_joined")
        .iter()
        .any(|x| x["agent"] == "ann"));

    // Ann resumes: she sees the bot's part of the transcript.
    n.send(
        a,
        serde_json::json!({"type":"resume","conv":conv.to_string(),"last_seq":0}),
    );
    let froms: Vec<String> = n
        .of_type(a, "msg")
        .iter()
        .map(|m| m["from"].as_str().unwrap().to_owned())
        .collect();
    assert!(froms.contains(&BOT_ID.to_owned()), "{froms:?}");

    // From now on a reply is a draft only ann sees, and labels reach her as they change.
    assist(
        &mut n,
        conv,
        3,
        Assist {
            reply: Some("Someone will be with you shortly.".into()),
            by: "llm".into(),
            labels: [("sentiment".to_owned(), "negative".to_owned())].into(),
            ..Assist::default()
        },
    );
    assert!(
        n.of_type(v, "msg").is_empty(),
        "the bot never talks over a human"
    );
    let f = n.frames(a);
    let draft = f.iter().find(|x| x["type"] == "draft").expect("a draft");
    assert_eq!(
        (draft["seq"].as_u64(), draft["by"].as_str()),
        (Some(3), Some("llm"))
    );
    let labels = f.iter().find(|x| x["type"] == "labels").expect("labels");
    assert_eq!(labels["labels"]["sentiment"], "negative");
    assert_eq!(labels["labels"]["intent"], "ask_human");
}

#[test]
fn an_angry_visitor_jumps_the_queue() {
    let mut n = Node::new(
        2,
        CoreConfig {
            agent_capacity: 1,
            ..cfg()
        },
        MemStore::default(),
    );
    welcome(&mut n, BotMode::BotFirst);
    let a = n.connect(0, ann());
    n.frames(a);
    let mut visitors = Vec::new();
    for i in 1..=3u64 {
        let v = n.connect((i % 2) as usize, visitor(i));
        n.frames(v);
        n.send(v, msg("m1", "hello"));
        let conv = conv_of(&n.frames(v));
        visitors.push((v, conv));
    }
    // The first hands over calmly and takes ann; the second waits; the third is angry.
    assist(
        &mut n,
        visitors[0].1,
        1,
        Assist {
            handoff: Some("misses".into()),
            ..Assist::default()
        },
    );
    assert_eq!(n.of_type(a, "assigned").len(), 1);
    assist(
        &mut n,
        visitors[1].1,
        1,
        Assist {
            handoff: Some("misses".into()),
            ..Assist::default()
        },
    );
    assert_eq!(n.of_type(visitors[1].0, "queued")[0]["position"], 1);
    assist(
        &mut n,
        visitors[2].1,
        1,
        Assist {
            handoff: Some("sentiment: negative 3 in a row".into()),
            priority: Some(3),
            ..Assist::default()
        },
    );
    assert_eq!(
        n.of_type(visitors[2].0, "queued")[0]["position"],
        1,
        "ahead of the calm one"
    );
    n.advance_s(1);
    assert_eq!(n.of_type(visitors[1].0, "queued")[0]["position"], 2);
    // Ann closes her first: the angry one is next.
    n.send(
        a,
        serde_json::json!({"type":"close","conv":visitors[0].1.to_string()}),
    );
    let assigned = n.of_type(a, "assigned");
    assert_eq!(assigned[0]["conv"], visitors[2].1.to_string());
    assert_eq!(assigned[0]["priority"], 3);
}

#[test]
fn without_the_bridge_the_bot_lets_go_and_a_late_decision_changes_nothing() {
    let mut n = Node::new(2, cfg(), MemStore::default());
    welcome(&mut n, BotMode::BotFirst);
    let v = n.connect(1, visitor(7));
    n.frames(v);
    n.send(v, msg("m1", "hi"));
    let conv = conv_of(&n.frames(v));
    // The dispatcher shard's link drops: the bot is gone, the visitor waits for a human.
    let now = n.now;
    n.shards[0].bridge_link_lost(now);
    n.settle();
    assert_eq!(n.of_type(v, "queued")[0]["position"], 1);
    // A decision that was on its way: no bot message while the conversation waits.
    assist(
        &mut n,
        conv,
        1,
        Assist {
            reply: Some("late".into()),
            ..Assist::default()
        },
    );
    assert!(n.of_type(v, "msg").is_empty());
    let a = n.connect(0, ann());
    assert_eq!(n.of_type(a, "assigned")[0]["conv"], conv.to_string());
    // `when_no_agent` with ann online: new conversations go straight to her.
    welcome(&mut n, BotMode::WhenNoAgent);
    let w = n.connect(1, visitor(8));
    n.frames(w);
    n.send(w, msg("m1", "hi"));
    let f = n.frames(w);
    assert!(f.iter().any(|x| x["type"] == "agent_joined"), "{f:?}");
    assert!(!f.iter().any(|x| x["type"] == "bot_joined"));
}
