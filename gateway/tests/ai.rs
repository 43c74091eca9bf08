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
    wait_bridge_up(&gw);
    gw
}

fn wait_bridge_up(gw: &Gateway) {
    let started = std::time::Instant::now();
    while gw.metric("chat_bridge_up", &["shard=\"0\""]) < 1.0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the bridge never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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

/// A configuration in a fresh directory: `text`, with the example files beside it.
fn fresh_config(what: &str, text: &str) -> (PathBuf, String) {
    let dir = temp_dir(what);
    let config = config_in(&dir, text);
    (dir, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_panics_or_hangs_changes_nothing_for_the_human_path() {
    for fault in ["panic", "hang"] {
        let (dir, config) = fresh_config(
            "ai-fault",
            &format!(
                "mode = \"bot_first\"\n\
                 [[plugin]]\nname = \"fault\"\nfault = \"{fault}\"\n\
                 [[plugin]]\nname = \"kb\"\nfile = \"faq.toml\"\n\
                 [[plugin]]\nname = \"handoff\"\n"
            ),
        );
        let gw = start(&config, &[]);
        let mut ann = gw.agent("ann").await;
        // The knowledge base still answers what it knows.
        let mut v = gw.visitor().await;
        say(&mut v, "m1", "How long is the warranty?", None).await;
        let m = next(&mut v, "msg").await;
        assert_eq!(m["from"], BOT, "{fault}");
        // What it does not know goes to a human at once, saying why.
        let mut w = gw.visitor().await;
        let conv = say(&mut w, "m1", "Can I bring my dog to the shop?", None).await;
        let assigned = next(&mut ann, "assigned").await;
        assert_eq!(assigned["conv"], conv.as_str(), "{fault}");
        assert!(
            assigned["reason"]
                .as_str()
                .unwrap()
                .contains("fault failed"),
            "{assigned}"
        );
        next(&mut w, "agent_joined").await;
        ann.send(json!({"type":"msg","conv":conv,"cid":"a1","body":"Yes, dogs are welcome."}))
            .await;
        assert_eq!(next(&mut w, "msg").await["from"], "ann");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A stand-in for an OpenAI-compatible server, speaking raw HTTP/1.1: `/ok/...` streams an
/// answer in chunks, `/fail/...` answers 500, `/slow/...` never answers.
async fn llm_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                if head.starts_with("POST /slow/") {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    return;
                }
                if head.starts_with("POST /fail/") {
                    let body = r#"{"error":{"message":"model overloaded"}}"#;
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                                .as_bytes(),
                        )
                        .await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                    .await;
                for event in [
                    r#"data: {"choices":[{"index":0,"delta":{"content":"Dogs on a lead "}}]}"#,
                    r#"data: {"choices":[{"index":0,"delta":{"content":"are welcome."},"finish_reason":"stop"}]}"#,
                    "data: [DONE]",
                ] {
                    let _ = s.write_all(format!("{event}\n\n").as_bytes()).await;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_llm_slow_failing_or_down_the_visitor_is_still_served() {
    let server = llm_server().await;
    let down = format!("http://{}", switchboard_test_support::ports::free_addr());
    for (case, base) in [
        ("ok", format!("{server}/ok/v1")),
        ("failing", format!("{server}/fail/v1")),
        ("slow", format!("{server}/slow/v1")),
        ("down", format!("{down}/v1")),
    ] {
        let (dir, config) = fresh_config(
            "ai-llm",
            &format!(
                "mode = \"bot_first\"\n\
                 [[plugin]]\nname = \"kb\"\nfile = \"faq.toml\"\n\
                 [[plugin]]\nname = \"llm\"\nbase_url = \"{base}\"\nmodel = \"test-model\"\n\
                 deadline_ms = 800\ntimeout_ms = 600\n\
                 [[plugin]]\nname = \"handoff\"\n"
            ),
        );
        let gw = start(&config, &[]);
        let mut ann = gw.agent("ann").await;
        // What the knowledge base knows never waits for the LLM.
        let mut v = gw.visitor().await;
        say(&mut v, "m1", "Do you ship internationally?", None).await;
        let m = next(&mut v, "msg").await;
        assert!(m["body"].as_str().unwrap().contains("40"), "{case}: {m}");
        // The rest: the LLM's answer, or a human.
        let mut w = gw.visitor().await;
        let conv = say(&mut w, "m1", "Can I bring my dog to the shop?", None).await;
        if case == "ok" {
            let m = next(&mut w, "msg").await;
            assert_eq!(
                (m["from"].as_str(), m["body"].as_str()),
                (Some(BOT), Some("Dogs on a lead are welcome."))
            );
        } else {
            let assigned = next(&mut ann, "assigned").await;
            assert_eq!(assigned["conv"], conv.as_str(), "{case}");
            assert!(
                assigned["reason"].as_str().unwrap().contains("llm failed"),
                "{case}: {assigned}"
            );
            next(&mut w, "agent_joined").await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_knowledge_base_reloads_without_a_restart() {
    let (dir, config) = fresh_config(
        "ai-reload",
        "mode = \"bot_first\"\n[[plugin]]\nname = \"kb\"\nfile = \"faq.toml\"\n",
    );
    let bridge_http = switchboard_test_support::ports::free_addr();
    let gw = Gateway::builder()
        .args(&["--ai", config.as_str()])
        .bridge_http(&bridge_http)
        .start();
    wait_bridge_up(&gw);
    let reloads = || {
        switchboard_test_support::Metrics::scrape(&bridge_http).value(
            "bridge_ai_reloads_total",
            &["plugin=\"kb\"", "outcome=\"ok\""],
        )
    };
    let mut v = gw.visitor().await;
    let conv = say(&mut v, "m1", "Where can I park my car?", None).await;
    next(&mut v, "bot_joined").await;
    // A new entry, and SIGHUP to the gateway (which passes it to its bridge).
    let faq = dir.join("faq.toml");
    let mut text = std::fs::read_to_string(&faq).unwrap();
    text.push_str("\n[[entry]]\nid = \"parking\"\nquestions = [\"Where can I park?\", \"停车场在哪\"]\nanswer = \"Free parking on level -2.\"\n");
    std::fs::write(&faq, text).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = std::time::Instant::now();
    while reloads() < 1.0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    say(&mut v, "m2", "Where can I park my car?", Some(&conv)).await;
    let m = next(&mut v, "msg").await;
    assert_eq!(
        (m["from"].as_str(), m["body"].as_str(), m["seq"].as_u64()),
        (Some(BOT), Some("Free parking on level -2."), Some(3)),
        "only the second question is answered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
