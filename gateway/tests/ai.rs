//! The AI layer end to end: a real gateway, its real storage bridge running the plugin chain
//! from the shipped example configuration, real WebSocket clients. Every frame received is
//! checked against the protocol's JSON Schema.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use switchboard_test_support::{temp_dir, Client, Gateway};

const SERVER_SCHEMA: &str = include_str!("../../docs/schema/server.json");
const BOT: &str = "bot:switchboard";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../storage-bridge/ai")
}

/// The shipped example (`bot_first`: intent, sentiment, kb, handoff).
fn example_config() -> String {
    example_dir()
        .join("switchboard-ai.toml")
        .display()
        .to_string()
}

/// A configuration of our own in `dir`, with the example files beside it.
fn config_in(dir: &Path, text: &str) -> String {
    for f in ["faq.toml", "intents.toml"] {
        std::fs::copy(example_dir().join(f), dir.join(f)).unwrap();
    }
    let path = dir.join("ai.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str::<Value>(SERVER_SCHEMA).unwrap()).unwrap()
}

/// The next frame of type `ty`, checked against the schema.
async fn next(c: &mut Client, ty: &str) -> Value {
    let v = c.expect(ty).await;
    let errors: Vec<String> = validator().iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{v} does not match the schema: {errors:?}"
    );
    v
}

/// A gateway with the AI layer of `config`, once its dispatcher shard's link to the bridge
/// is up (and so knows the bot's mode: a conversation opened before goes to humans).
fn start(config: &str, extra: &[&str]) -> Gateway {
    let gw = Gateway::start(&[&["--ai", config], extra].concat());
    let started = std::time::Instant::now();
    while gw.metric("chat_bridge_up", &["shard=\"0\""]) < 1.0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the bridge never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    gw
}

/// Sends a visitor message and waits for its ack; the conversation's id.
async fn say(v: &mut Client, cid: &str, body: &str, conv: Option<&str>) -> String {
    v.msg(cid, body, conv).await;
    let ack = next(v, "ack").await;
    ack["conv"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bot_answers_from_the_knowledge_base_hands_over_on_request_and_then_drafts() {
    let gw = start(&example_config(), &[]);
    let mut ann = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    let conv = say(&mut v, "m1", "怎么退款", None).await;
    assert_eq!(next(&mut v, "bot_joined").await["bot"], BOT);
    // A FAQ question: the bot's answer, an ordinary stored message.
    let answer = next(&mut v, "msg").await;
    assert_eq!(answer["from"], BOT);
    assert_eq!(answer["seq"], 2);
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .contains("30天内可无理由退货"),
        "{answer}"
    );
    // "转人工": the bot hands over; ann (free all along) gets it now, with the reason.
    say(&mut v, "m2", "转人工", Some(&conv)).await;
    let assigned = next(&mut ann, "assigned").await;
    assert_eq!(assigned["conv"], conv.as_str());
    assert_eq!(assigned["reason"], "intent: ask_human");
    assert_eq!(assigned["labels"]["intent"], "ask_human");
    assert_eq!(next(&mut v, "agent_joined").await["agent"], "ann");
    // Ann reads the transcript, the bot's part included.
    ann.send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    let mut froms = Vec::new();
    for _ in 0..3 {
        froms.push(
            next(&mut ann, "msg").await["from"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(froms[1], BOT, "{froms:?}");
    next(&mut ann, "resumed").await;
    // A FAQ question now: a draft only ann sees, and the new labels.
    say(&mut v, "m3", "How do I reset my password?", Some(&conv)).await;
    let draft = next(&mut ann, "draft").await;
    assert_eq!(
        (draft["seq"].as_u64(), draft["by"].as_str()),
        (Some(4), Some("kb"))
    );
    assert!(draft["body"].as_str().unwrap().contains("Forgot password"));
    let labels = next(&mut ann, "labels").await;
    assert_eq!(labels["conv"], conv.as_str());
    // The visitor got no bot message meanwhile: ann's reply is the next `msg` it sees.
    ann.send(json!({"type":"msg","conv":conv,"cid":"a1","body":"Here is the link."}))
        .await;
    let m = next(&mut v, "msg").await;
    assert_eq!(
        (m["from"].as_str(), m["seq"].as_u64()),
        (Some("ann"), Some(5))
    );
    // History keeps the bot's answer, stored.
    v.send(json!({"type":"history","conv":conv,"limit":10}))
        .await;
    let h = next(&mut v, "history").await;
    assert!(h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["from"] == BOT && m["seq"] == 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_angry_visitor_jumps_the_queue() {
    let gw = start(&example_config(), &["--agent-capacity", "1"]);
    let mut ann = gw.agent("ann").await;
    // The first asks for a human and takes ann's only place.
    let mut first = gw.visitor().await;
    let c1 = say(&mut first, "m1", "I want to talk to a human", None).await;
    assert_eq!(next(&mut ann, "assigned").await["conv"], c1.as_str());
    // The second asks calmly and waits.
    let mut calm = gw.visitor().await;
    say(&mut calm, "m1", "I want to talk to a human", None).await;
    assert_eq!(next(&mut calm, "queued").await["position"], 1);
    // The third is angry: the bot cannot help twice, and the sentiment raised the priority.
    let mut angry = gw.visitor().await;
    let c3 = say(
        &mut angry,
        "m1",
        "This is terrible, the worst service ever!",
        None,
    )
    .await;
    say(&mut angry, "m2", "Unacceptable. I am furious!!", Some(&c3)).await;
    assert_eq!(next(&mut angry, "queued").await["position"], 1, "ahead");
    assert_eq!(next(&mut calm, "queued").await["position"], 2);
    // Ann closes her first conversation: the angry visitor is next, and she sees why.
    ann.send(json!({"type":"close","conv":c1})).await;
    let assigned = next(&mut ann, "assigned").await;
    assert_eq!(assigned["conv"], c3.as_str());
    assert_eq!(assigned["priority"], 3);
    assert_eq!(assigned["labels"]["sentiment"], "negative");
    assert!(
        assigned["reason"]
            .as_str()
            .unwrap()
            .contains("could not answer"),
        "{assigned}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_no_agent_is_online_the_bot_answers_and_gives_way_when_one_comes() {
    let dir = temp_dir("ai-when-no-agent");
    let config = config_in(
        &dir,
        "mode = \"when_no_agent\"\n[[plugin]]\nname = \"kb\"\nfile = \"faq.toml\"\n",
    );
    let gw = start(&config, &[]);
    let mut v = gw.visitor().await;
    let conv = say(&mut v, "m1", "Which payment methods do you accept?", None).await;
    next(&mut v, "bot_joined").await;
    assert_eq!(next(&mut v, "msg").await["from"], BOT);
    // An agent comes online: the conversation goes to her at once.
    let mut ann = gw.agent("ann").await;
    assert_eq!(next(&mut ann, "assigned").await["conv"], conv.as_str());
    next(&mut v, "agent_joined").await;
    // A new visitor now gets ann, not the bot.
    let mut w = gw.visitor().await;
    say(&mut w, "m1", "Which payment methods do you accept?", None).await;
    next(&mut w, "agent_joined").await;
    let _ = std::fs::remove_dir_all(&dir);
}
