//! End-to-end conversations against the real binary with two shards.

use serde_json::json;
use switchboard_test_support::{eventually_async, settled_async, Client, Gateway, TIMEOUT};

fn conv_of(ack: &serde_json::Value) -> String {
    ack["conv"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn visitor_and_agent_on_different_shards_talk_both_ways_in_order() {
    let gw = Gateway::start(&["--rate-burst", "100"]);
    let mut agent = gw.agent("ann").await;
    let mut visitor = gw.visitor_not_on(agent.shard()).await;
    assert_ne!(agent.shard(), visitor.shard());
    assert_eq!(visitor.welcome["role"], "visitor");
    assert!(visitor.id().starts_with('v'));

    for i in 1..=20 {
        visitor
            .msg(&format!("v{i}"), &format!("question {i}"), None)
            .await;
    }
    let mut conv = String::new();
    for i in 1..=20u64 {
        let ack = visitor.expect("ack").await;
        assert_eq!(
            (ack["cid"].as_str().unwrap(), ack["seq"].as_u64().unwrap()),
            (format!("v{i}").as_str(), i)
        );
        conv = conv_of(&ack);
    }
    let assigned = agent.assigned().await;
    assert_eq!(
        assigned,
        json!({"type":"assigned","conv":conv,"visitor":visitor.id()})
    );
    for i in 1..=20u64 {
        let m = agent.expect("msg").await;
        assert_eq!(m["seq"], i);
        assert_eq!(m["body"], format!("question {i}"));
        assert_eq!(m["from"], visitor.id());
        assert!(m["ts"].as_u64().unwrap() > 1_600_000_000_000);
    }
    for i in 1..=5 {
        agent
            .msg(&format!("a{i}"), &format!("answer {i}"), Some(&conv))
            .await;
        let ack = agent.expect("ack").await;
        assert_eq!(ack["seq"], 20 + i);
    }
    for i in 1..=5u64 {
        let m = visitor.expect("msg").await;
        assert_eq!(
            (m["seq"].as_u64(), m["from"].as_str()),
            (Some(20 + i), Some("ann"))
        );
    }
    // Typing and read receipts relay to the other side.
    visitor.send(json!({"type":"typing"})).await;
    assert_eq!(
        agent.expect("typing").await,
        json!({"type":"typing","conv":conv,"from":visitor.id()})
    );
    agent
        .send(json!({"type":"read","conv":conv,"seq":20}))
        .await;
    assert_eq!(
        visitor.expect("read").await,
        json!({"type":"read","conv":conv,"from":"ann","seq":20})
    );
    // A resend is acknowledged with its first seq and not delivered again.
    visitor.msg("v3", "question 3", None).await;
    assert_eq!(visitor.expect("ack").await["seq"], 3);
    visitor.msg("v21", "new", None).await;
    assert_eq!(visitor.expect("ack").await["seq"], 26);
    assert_eq!(
        agent.expect("msg").await["seq"],
        26,
        "the resend was not delivered"
    );
}

#[tokio::test]
async fn visitors_queue_and_drain_as_agents_arrive_and_close() {
    let gw = Gateway::start(&["--agent-capacity", "1"]);
    let mut visitors = Vec::new();
    for i in 0..3u64 {
        let mut v = gw.visitor().await;
        v.msg("m1", "help", None).await;
        let ack = v.expect("ack").await;
        let queued = v.expect("queued").await;
        // Nobody is online yet: each is leaving a message, and is told so.
        assert_eq!(
            queued,
            json!({"type":"queued","conv":ack["conv"],"position":i + 1,"offline":true,
                "offline_text":switchboard_core::config::DEFAULT_OFFLINE_TEXT})
        );
        visitors.push((v, conv_of(&ack)));
    }
    let mut agent = gw.agent("ann").await;
    let first = agent.assigned().await;
    assert_eq!(first["conv"], visitors[0].1);
    assert_eq!(
        agent.expect("msg").await["body"],
        "help",
        "backlog replayed to the agent"
    );
    assert_eq!(visitors[0].0.expect("agent_joined").await["agent"], "ann");
    // The others move up.
    for (i, (v, conv)) in visitors.iter_mut().enumerate().skip(1) {
        let q = v.expect_queued_position().await;
        assert_eq!((q.0.as_str(), q.1), (conv.as_str(), i as u64));
    }
    // Closing frees the agent for the next in line; the visitor is told.
    agent
        .send(json!({"type":"close","conv":visitors[0].1}))
        .await;
    let closed = visitors[0].0.expect("closed").await;
    assert_eq!(
        closed,
        json!({"type":"closed","conv":visitors[0].1,"by":"ann","reason":"agent"})
    );
    assert_eq!(agent.expect("closed").await["conv"], visitors[0].1);
    assert_eq!(agent.assigned().await["conv"], visitors[1].1);
    // A second agent takes the last one.
    let mut bob = gw.agent("bob").await;
    assert_eq!(bob.assigned().await["conv"], visitors[2].1);
    bob.expect("msg").await;
    // Visitors cannot close; agents cannot close what is not theirs.
    let conv1 = visitors[1].1.clone();
    visitors[1]
        .0
        .send(json!({"type":"close","conv":conv1}))
        .await;
    assert_eq!(visitors[1].0.expect("error").await["code"], "forbidden");
    bob.send(json!({"type":"close","conv":visitors[1].1})).await;
    assert_eq!(bob.expect("error").await["code"], "not_in_conversation");
}

trait QueuedExt {
    async fn expect_queued_position(&mut self) -> (String, u64);
}

impl QueuedExt for Client {
    async fn expect_queued_position(&mut self) -> (String, u64) {
        loop {
            let v = self.recv().await;
            if v["type"] == "queued" {
                return (
                    v["conv"].as_str().unwrap().into(),
                    v["position"].as_u64().unwrap(),
                );
            }
        }
    }
}

#[tokio::test]
async fn a_conversation_nobody_writes_in_closes_by_itself_and_frees_its_agent() {
    let gw = Gateway::start(&["--conversation-idle-close-s", "2", "--agent-capacity", "1"]);
    let mut agent = gw.agent("ann").await;
    let mut v1 = gw.visitor().await;
    v1.msg("m1", "hello", None).await;
    let conv1 = v1.expect("ack").await["conv"].clone();
    assert_eq!(agent.assigned().await["conv"], conv1);
    // A second visitor waits; opening later, their conversation stays open for a while
    // after the first one closes. (A deliberate pause: the second conversation must start
    // this much later than the first, nothing is being waited for.)
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut v2 = gw.visitor().await;
    v2.msg("m1", "me too", None).await;
    let conv2 = v2.expect("ack").await["conv"].clone();
    v2.expect("queued").await;
    assert_eq!(
        v1.expect("closed").await,
        json!({"type":"closed","conv":conv1,"reason":"idle"})
    );
    assert_eq!(agent.expect("closed").await["conv"], conv1);
    assert_eq!(agent.assigned().await["conv"], conv2, "ann's place freed");
    // The visitor's next message opens a new conversation.
    v1.msg("m2", "back again", None).await;
    let ack = v1.expect("ack").await;
    assert_ne!(ack["conv"], conv1);
    // Counted by the shard's once-a-second publication.
    eventually_async(
        "chat_conversations_idle_closed_total to count the idle close",
        TIMEOUT,
        || gw.metric("chat_conversations_idle_closed_total", &[]),
        |n| *n >= 1.0,
    )
    .await;
}

#[tokio::test]
async fn every_device_of_an_agent_gets_its_conversations() {
    let gw = Gateway::start(&[]);
    let mut desk = gw.agent("ann").await;
    let mut phone = loop {
        let p = gw.agent("ann").await;
        if p.shard() != desk.shard() {
            break p;
        }
    };
    let mut v = gw.visitor().await;
    v.msg("m1", "hello", None).await;
    let conv = conv_of(&v.expect("ack").await);
    for d in [&mut desk, &mut phone] {
        assert_eq!(d.assigned().await["conv"], conv);
        assert_eq!(d.expect("msg").await["seq"], 1);
    }
    desk.msg("a1", "from the desk", Some(&conv)).await;
    assert_eq!(desk.expect("ack").await["seq"], 2);
    let seen = phone.expect("msg").await;
    assert_eq!(
        (seen["seq"].as_u64(), seen["body"].as_str()),
        (Some(2), Some("from the desk"))
    );
    assert_eq!(v.expect("msg").await["seq"], 2);
}

#[tokio::test]
async fn a_visitor_resumes_its_identity_and_missed_messages_after_reconnecting() {
    let gw = Gateway::start(&[]);
    let mut agent = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    let (id, token) = (v.id(), v.welcome["token"].as_str().unwrap().to_string());
    v.msg("m1", "hi", None).await;
    let conv = conv_of(&v.expect("ack").await);
    agent.assigned().await;
    agent.expect("msg").await;
    agent.msg("a1", "one", Some(&conv)).await;
    assert_eq!(v.expect("msg").await["seq"], 2);
    drop(v);
    for i in 2..=4 {
        agent
            .msg(&format!("a{i}"), "while you were away", Some(&conv))
            .await;
        agent.expect("ack").await;
    }
    // Back, possibly on another shard, with the token from the first welcome.
    let mut v = Client::connect(&gw.url(&format!("/ws/visitor?client=mobile&token={token}")))
        .await
        .unwrap();
    assert_eq!(v.id(), id);
    v.send(json!({"type":"resume","conv":conv,"last_seq":2}))
        .await;
    for seq in 3..=5 {
        assert_eq!(v.expect("msg").await["seq"], seq);
    }
    assert_eq!(
        v.expect("resumed").await,
        json!({"type":"resumed","conv":conv,"last_seq":5,"replayed":3,"complete":true})
    );
    agent.msg("a5", "welcome back", Some(&conv)).await;
    assert_eq!(v.expect("msg").await["seq"], 6);
    v.msg("m2", "thanks", None).await;
    assert_eq!(
        v.expect("ack").await["conv"],
        conv.as_str(),
        "resumed conversation is current"
    );
    drop(v);

    // Back again, this time without naming the conversation (a page reload that kept only
    // the token): the first frame about it puts the connection back in it.
    let mut v = Client::connect(&gw.url(&format!("/ws/visitor?client=web&token={token}")))
        .await
        .unwrap();
    v.msg("m3", "one more thing", None).await;
    assert_eq!(
        v.expect("resumed").await,
        json!({"type":"resumed","conv":conv,"last_seq":7,"replayed":0,"complete":true})
    );
    let ack = v.expect("ack").await;
    assert_eq!(
        (ack["conv"].as_str(), ack["seq"].as_u64()),
        (Some(&*conv), Some(8))
    );
    assert_eq!(
        agent.expect("msg").await["seq"],
        7,
        "the earlier \"thanks\""
    );
    assert_eq!(agent.expect("msg").await["seq"], 8);
    agent.msg("a6", "sure", Some(&conv)).await;
    assert_eq!(v.expect("msg").await["seq"], 9);

    // An altered token is refused at the upgrade.
    let mut altered = token.clone();
    altered.pop();
    altered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let err = Client::connect(&gw.url(&format!("/ws/visitor?token={altered}")))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("401"), "{err}");
    // Someone else's conversation cannot be resumed.
    let mut stranger = gw.visitor().await;
    stranger
        .send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    assert_eq!(
        stranger.expect("error").await["code"],
        "not_in_conversation"
    );
}

#[tokio::test]
#[allow(non_snake_case)]
async fn two_thousand_concurrent_connections_exchange_messages() {
    let scale: usize = std::env::var("SB_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (AGENTS, VISITORS) = (scale, scale * 19);
    const ROUNDS: u64 = 3;
    // Thousands of connections from one address at once: capacity, not a flood.
    let gw = Gateway::builder()
        .args(&[
            "--agent-capacity",
            "19",
            "--rate-per-sec",
            "1000",
            "--rate-burst",
            "1000",
        ])
        .args(&switchboard_test_support::gateway::NO_SOURCE_LIMITS)
        .start();
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(gw.agent(&format!("agent{i}")).await);
    }
    let url = gw.url("/ws/visitor?client=api");
    // Visitors: open a conversation, then send ROUNDS messages, each answered by the agent.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..VISITORS {
        let url = url.clone();
        tasks.spawn(async move {
            let mut v = Client::connect(&url).await.unwrap();
            for r in 1..=ROUNDS {
                v.msg(&format!("m{r}"), "ping", None).await;
                let ack = v.expect("ack").await;
                assert_eq!(ack["seq"], 2 * r - 1);
                let reply = v.expect("msg").await;
                assert_eq!(reply["seq"], 2 * r);
                assert_eq!(reply["body"], "pong");
            }
        });
    }
    // Agents: answer every visitor message.
    let mut agent_tasks = tokio::task::JoinSet::new();
    for mut a in agents {
        agent_tasks.spawn(async move {
            let mut answered = 0u64;
            loop {
                let f = tokio::time::timeout(std::time::Duration::from_secs(3), async {
                    a.recv().await
                })
                .await;
                let Ok(f) = f else { return answered };
                if f["type"] == "assigned" {
                    a.send(json!({"type":"resume","conv":f["conv"],"last_seq":0}))
                        .await;
                }
                if f["type"] == "msg" {
                    let conv = f["conv"].as_str().unwrap().to_string();
                    let cid = format!("r{}", f["seq"]);
                    a.msg(&cid, "pong", Some(&conv)).await;
                    answered += 1;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut answered = 0;
    while let Some(r) = agent_tasks.join_next().await {
        answered += r.unwrap();
    }
    assert_eq!(answered, VISITORS as u64 * ROUNDS);
    // Each shard publishes its count once a second: wait until it has caught up (or stops
    // short), then the count must be exact.
    let relayed = (VISITORS as u64 * ROUNDS * 2) as f64;
    let published = settled_async(
        TIMEOUT,
        || gw.metric("chat_messages_relayed_total", &[]),
        |n| *n >= relayed,
    )
    .await;
    assert_eq!(published, relayed);
}
