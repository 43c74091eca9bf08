//! Several shards in one thread, wired by in-memory FIFO queues (one per ordered pair of
//! shards, like the gateway's channel mesh), driven through whole conversations. The pump
//! may interleave the queues in any order a seed picks, as real cores would.
//!
//! Longer than our usual ~600 lines on purpose: every test here shares the one in-process
//! cluster above, and the randomized ones at the end replay the scenarios of the others.

mod node;

use bytes::Bytes;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use switchboard_core::{ConnKey, CoreConfig, Now, Shard, ShardMsg};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use switchboard_protocol::{AgentId, ParticipantId, VisitorId};

struct Cluster {
    shards: Vec<Shard>,
    /// queues[from][to]
    queues: Vec<Vec<VecDeque<ShardMsg>>>,
    now: Now,
    rng: fastrand::Rng,
}

#[derive(Clone, Copy, Debug)]
struct Client {
    shard: usize,
    key: ConnKey,
}

impl Cluster {
    fn new(n: usize, cfg: CoreConfig, seed: u64) -> Self {
        let signer = TokenSigner::new(b"cluster test secret!").unwrap();
        Self {
            shards: (0..n)
                .map(|i| Shard::new(i as u32, n as u32, cfg.clone(), signer.clone(), 42))
                .collect(),
            queues: (0..n)
                .map(|_| (0..n).map(|_| VecDeque::new()).collect())
                .collect(),
            now: Now {
                mono_ms: 1_000,
                unix_ms: 1_700_000_000_000,
            },
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn collect(&mut self) {
        for (from, shard) in self.shards.iter_mut().enumerate() {
            for (to, msg) in shard.take_outgoing() {
                self.queues[from][to as usize].push_back(msg);
            }
        }
    }

    /// Delivers queued messages, one at a time from a randomly chosen non-empty queue, until
    /// every queue is empty.
    fn settle(&mut self) {
        loop {
            self.collect();
            let n = self.shards.len();
            let busy: Vec<(usize, usize)> = (0..n)
                .flat_map(|f| (0..n).map(move |t| (f, t)))
                .filter(|&(f, t)| !self.queues[f][t].is_empty())
                .collect();
            if busy.is_empty() {
                return;
            }
            let (f, t) = busy[self.rng.usize(..busy.len())];
            let msg = self.queues[f][t].pop_front().unwrap();
            self.shards[t].on_shard_msg(f as u32, msg, self.now);
        }
    }

    fn connect(&mut self, shard: usize, who: ParticipantId) -> Client {
        self.connect_as(shard, who, false)
    }

    /// `resumed`: the client presented its token (a returning visitor).
    fn connect_as(&mut self, shard: usize, who: ParticipantId, resumed: bool) -> Client {
        let key = self.shards[shard].connect(node::web_identity(who, resumed), self.now);
        self.settle();
        Client { shard, key }
    }

    fn visitor(&mut self, shard: usize, id: u64) -> Client {
        self.connect(shard, ParticipantId::Visitor(VisitorId(id)))
    }

    fn agent(&mut self, shard: usize, name: &str) -> Client {
        self.connect(shard, ParticipantId::Agent(AgentId::new(name).unwrap()))
    }

    fn send(&mut self, c: Client, text: &str) {
        self.shards[c.shard].on_text(c.key, text, self.now);
        self.settle();
    }

    fn send_json(&mut self, c: Client, v: Value) {
        self.send(c, &v.to_string());
    }

    /// Reads everything queued for a client, as a client reading as fast as it can does
    /// (the next page of a paged replay follows once the last is read).
    fn frames(&mut self, c: Client) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let io = self.shards[c.shard].io(c.key).expect("connection exists");
            while let Some(f) = io.outbox.pop() {
                out.push(serde_json::from_slice::<Value>(&f).unwrap());
            }
            if !io.drain_wanted {
                return out;
            }
            self.shards[c.shard].on_drained(c.key, self.now);
            self.settle();
        }
    }

    /// Reads a client's frames; for every `assigned` among them, resumes that conversation
    /// from the start (as an agent's client does) and reads on. Returns everything read.
    fn frames_resuming(&mut self, c: Client) -> Vec<Value> {
        let mut out = Vec::new();
        let mut pending = self.frames(c);
        while !pending.is_empty() {
            let mut next = Vec::new();
            for f in pending {
                if f["type"] == "assigned" {
                    self.send_json(
                        c,
                        serde_json::json!({"type":"resume","conv":f["conv"],"last_seq":0}),
                    );
                    next.extend(self.frames(c));
                }
                out.push(f);
            }
            pending = next;
        }
        out
    }

    fn of_type(&mut self, c: Client, ty: &str) -> Vec<Value> {
        self.frames(c)
            .into_iter()
            .filter(|f| f["type"] == ty)
            .collect()
    }

    fn disconnect(&mut self, c: Client) {
        self.shards[c.shard].disconnect(c.key);
        self.settle();
    }

    fn advance(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_ms += ms;
        for s in &mut self.shards {
            s.tick(self.now);
        }
        self.settle();
    }
}

fn msg(cid: &str, body: &str) -> Value {
    serde_json::json!({"type":"msg","cid":cid,"body":body})
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "msg")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn visitor_waits_in_queue_then_talks_with_an_agent_on_another_shard() {
    for seed in 0..20 {
        let mut c = Cluster::new(3, CoreConfig::default(), seed);
        let v = c.visitor(2, 1);
        let welcome = c.frames(v);
        assert_eq!(welcome[0]["type"], "welcome");
        assert_eq!(welcome[0]["id"], "v0000000000000001");
        assert!(welcome[0]["token"].as_str().unwrap().starts_with("sb1.v."));

        c.send_json(v, msg("m1", "hello"));
        let frames = c.frames(v);
        let ack = frames.iter().find(|f| f["type"] == "ack").expect("ack");
        assert_eq!(
            (ack["cid"].as_str(), ack["seq"].as_u64()),
            (Some("m1"), Some(1))
        );
        let conv = ack["conv"].as_str().unwrap().to_string();
        let queued = frames
            .iter()
            .find(|f| f["type"] == "queued")
            .expect("queued");
        assert_eq!(queued["position"], 1);

        let a = c.agent(1, "ann");
        let frames = c.frames_resuming(a);
        assert_eq!(frames[0]["type"], "welcome");
        let assigned = frames
            .iter()
            .find(|f| f["type"] == "assigned")
            .expect("assigned");
        assert_eq!(
            (assigned["conv"].as_str(), assigned["visitor"].as_str()),
            (Some(&*conv), Some("v0000000000000001"))
        );
        // The backlog is replayed to the newly assigned agent.
        let backlog: Vec<&Value> = frames.iter().filter(|f| f["type"] == "msg").collect();
        assert_eq!(backlog.len(), 1);
        assert_eq!(
            (backlog[0]["body"].as_str(), backlog[0]["from"].as_str()),
            (Some("hello"), Some("v0000000000000001"))
        );
        assert_eq!(c.of_type(v, "agent_joined")[0]["agent"], "ann");

        c.send_json(
            a,
            serde_json::json!({"type":"msg","cid":"a1","body":"hi, how can I help?","conv":conv}),
        );
        assert_eq!(c.of_type(a, "ack")[0]["seq"], 2);
        let got = c.of_type(v, "msg");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0]["from"].as_str(), got[0]["seq"].as_u64()),
            (Some("ann"), Some(2))
        );
        assert!(got[0]["ts"].as_u64().unwrap() >= 1_700_000_000_000);

        // Typing and read receipts cross too.
        c.send_json(v, serde_json::json!({"type":"typing"}));
        assert_eq!(c.of_type(a, "typing")[0]["from"], "v0000000000000001");
        c.send_json(a, serde_json::json!({"type":"read","conv":conv,"seq":1}));
        assert_eq!(c.of_type(v, "read")[0]["seq"], 1);
    }
}

#[test]
fn resends_are_acked_with_the_same_seq_and_not_delivered_twice() {
    let mut c = Cluster::new(2, CoreConfig::default(), 1);
    let a = c.agent(0, "ann");
    let v = c.visitor(1, 1);
    c.send_json(v, msg("m1", "one"));
    c.send_json(v, msg("m2", "two"));
    c.send_json(v, msg("m1", "one again"));
    let agent_frames = c.frames_resuming(a);
    let acks: Vec<(String, u64)> = c
        .of_type(v, "ack")
        .iter()
        .map(|f| {
            (
                f["cid"].as_str().unwrap().into(),
                f["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        acks,
        vec![("m1".into(), 1), ("m2".into(), 2), ("m1".into(), 1)]
    );
    assert_eq!(seqs(&agent_frames), vec![1, 2]);
}

#[test]
fn a_reconnecting_visitor_resumes_without_gaps_or_duplicates() {
    for seed in 0..20 {
        let mut c = Cluster::new(2, CoreConfig::default(), seed);
        let a = c.agent(0, "ann");
        let v = c.visitor(1, 7);
        c.send_json(v, msg("m1", "hi"));
        let conv = c.of_type(v, "ack")[0]["conv"].as_str().unwrap().to_string();
        c.frames(a);
        let say = |c: &mut Cluster, i: u32| {
            c.send_json(
                a,
                serde_json::json!({"type":"msg","cid":format!("a{i}"),"body":"x","conv":conv}),
            );
        };
        say(&mut c, 1);
        assert_eq!(seqs(&c.frames(v)), vec![2]);
        c.disconnect(v);
        for i in 2..5 {
            say(&mut c, i);
        }
        // Back on the other shard, as the same visitor.
        let v2 = c.visitor(0, 7);
        c.frames(v2);
        c.send_json(
            v2,
            serde_json::json!({"type":"resume","conv":conv,"last_seq":2}),
        );
        let frames = c.frames(v2);
        assert_eq!(seqs(&frames), vec![3, 4, 5]);
        let resumed = frames.last().unwrap();
        assert_eq!(
            (
                resumed["type"].as_str(),
                resumed["last_seq"].as_u64(),
                resumed["complete"].as_bool()
            ),
            (Some("resumed"), Some(5), Some(true))
        );
        say(&mut c, 5);
        assert_eq!(seqs(&c.frames(v2)), vec![6]);
        // Its next message lands in the resumed conversation.
        c.send_json(v2, msg("m2", "back"));
        assert_eq!(c.of_type(v2, "ack")[0]["conv"], conv.as_str());
    }
}

#[test]
fn strangers_cannot_resume_or_post_to_a_conversation_and_visitors_cannot_close() {
    let mut c = Cluster::new(2, CoreConfig::default(), 3);
    let _a = c.agent(0, "ann");
    let v = c.visitor(1, 1);
    c.send_json(v, msg("m1", "hi"));
    let conv = c.of_type(v, "ack")[0]["conv"].as_str().unwrap().to_string();
    let stranger = c.visitor(0, 2);
    c.frames(stranger);
    c.send_json(
        stranger,
        serde_json::json!({"type":"resume","conv":conv,"last_seq":0}),
    );
    let f = c.frames(stranger);
    assert_eq!(
        (f.len(), f[0]["code"].as_str()),
        (1, Some("not_in_conversation"))
    );
    c.send_json(
        stranger,
        serde_json::json!({"type":"msg","cid":"x","body":"spam","conv":conv}),
    );
    assert_eq!(c.frames(stranger)[0]["code"], "not_in_conversation");
    let bob = c.agent(1, "bob");
    c.frames(bob);
    c.send_json(bob, serde_json::json!({"type":"close","conv":conv}));
    assert_eq!(c.frames(bob)[0]["code"], "not_in_conversation");
    c.send_json(v, serde_json::json!({"type":"close","conv":conv}));
    assert_eq!(c.frames(v)[0]["code"], "forbidden");
}

#[test]
fn every_device_of_an_agent_gets_its_conversations() {
    let mut c = Cluster::new(3, CoreConfig::default(), 5);
    let d1 = c.agent(0, "ann");
    let d2 = c.agent(2, "ann");
    let v = c.visitor(1, 1);
    c.send_json(v, msg("m1", "hi"));
    for d in [d1, d2] {
        let f = c.frames_resuming(d);
        assert_eq!(
            f.iter().filter(|x| x["type"] == "assigned").count(),
            1,
            "{f:?}"
        );
        assert_eq!(seqs(&f), vec![1]);
    }
    let conv = c.of_type(v, "ack")[0]["conv"].as_str().unwrap().to_string();
    c.send_json(
        d1,
        serde_json::json!({"type":"msg","cid":"a1","body":"from d1","conv":conv}),
    );
    assert_eq!(seqs(&c.frames(d2)), vec![2], "the other device sees it");
    assert_eq!(seqs(&c.frames(v)), vec![2]);
    let d1_frames = c.frames(d1);
    assert!(
        seqs(&d1_frames).is_empty(),
        "the sender gets an ack, not its own message"
    );

    // A third device arriving later is told of the conversation and resumes it.
    let d3 = c.agent(1, "ann");
    let f = c.frames(d3);
    assert_eq!(f.iter().filter(|x| x["type"] == "assigned").count(), 1);
    c.send_json(
        d3,
        serde_json::json!({"type":"resume","conv":conv,"last_seq":0}),
    );
    assert_eq!(seqs(&c.frames(d3)), vec![1, 2]);
}

#[test]
fn closing_tells_the_visitor_frees_the_agent_and_the_next_message_opens_a_new_conversation() {
    let cfg = CoreConfig {
        agent_capacity: 1,
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(2, cfg, 9);
    let a = c.agent(0, "ann");
    let v1 = c.visitor(1, 1);
    let v2 = c.visitor(1, 2);
    c.send_json(v1, msg("m1", "first"));
    c.send_json(v2, msg("m1", "second"));
    assert_eq!(c.of_type(v2, "queued")[0]["position"], 1);
    let conv1 = c.of_type(v1, "ack")[0]["conv"]
        .as_str()
        .unwrap()
        .to_string();
    c.frames(a);
    c.send_json(a, serde_json::json!({"type":"close","conv":conv1}));
    let closed = c.of_type(v1, "closed");
    assert_eq!(
        (closed[0]["conv"].as_str(), closed[0]["by"].as_str()),
        (Some(&*conv1), Some("ann"))
    );
    // The slot went to the waiting visitor.
    assert_eq!(c.of_type(a, "assigned").len(), 1);
    assert_eq!(c.of_type(v2, "agent_joined").len(), 1);
    // Late frames to the closed conversation are refused; a new message opens a new one.
    c.send_json(
        a,
        serde_json::json!({"type":"msg","cid":"late","body":"x","conv":conv1}),
    );
    assert_eq!(c.of_type(a, "error")[0]["code"], "conversation_closed");
    c.send_json(v1, msg("m2", "another question"));
    let ack = &c.of_type(v1, "ack")[0];
    assert_ne!(ack["conv"].as_str(), Some(&*conv1));
    assert_eq!(ack["seq"], 1);
}

#[test]
fn queue_positions_update_as_the_queue_moves() {
    let cfg = CoreConfig {
        agent_capacity: 1,
        queue_update_interval: Duration::from_millis(100),
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(2, cfg, 11);
    let vs: Vec<Client> = (0..4).map(|i| c.visitor(i % 2, i as u64 + 1)).collect();
    for (i, v) in vs.iter().enumerate() {
        c.send_json(*v, msg("m", "hi"));
        assert_eq!(c.of_type(*v, "queued")[0]["position"], i as u64 + 1);
    }
    let a = c.agent(1, "ann");
    assert_eq!(c.of_type(a, "assigned").len(), 1);
    c.advance(200);
    assert_eq!(c.of_type(vs[0], "agent_joined").len(), 1);
    for (i, v) in vs.iter().enumerate().skip(1) {
        assert_eq!(
            c.of_type(*v, "queued")[0]["position"],
            i as u64,
            "visitor {i}"
        );
    }
}

#[test]
fn idle_connections_are_pinged_then_closed_and_activity_defers_both() {
    let cfg = CoreConfig {
        idle_web: Duration::from_secs(10),
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(1, cfg, 0);
    let quiet = c.visitor(0, 1);
    let busy = c.visitor(0, 2);
    for _ in 0..6 {
        c.advance(1_000);
        c.shards[0].touch(busy.key, c.now);
    }
    assert!(
        c.shards[0].io(quiet.key).unwrap().ping_due,
        "pinged at half the deadline"
    );
    assert!(!c.shards[0].io(busy.key).unwrap().ping_due);
    for _ in 0..5 {
        c.advance(1_000);
        c.shards[0].touch(busy.key, c.now);
    }
    assert_eq!(
        c.shards[0].io(quiet.key).unwrap().close,
        Some(switchboard_protocol::CloseCode::IdleTimeout)
    );
    assert_eq!(c.shards[0].io(busy.key).unwrap().close, None);
}

#[test]
fn a_client_that_does_not_read_is_closed_as_slow_consumer() {
    let cfg = CoreConfig {
        max_outbox_bytes: 4096,
        rate_burst: 1_000.0,
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(2, cfg, 0);
    let a = c.agent(0, "ann");
    let v = c.visitor(1, 1);
    c.send_json(v, msg("m0", "hi"));
    let conv = c.of_type(v, "ack")[0]["conv"].as_str().unwrap().to_string();
    for i in 0..100 {
        c.send_json(a, serde_json::json!({"type":"msg","cid":format!("a{i}"),"body":"x".repeat(100),"conv":conv}));
        c.frames(a);
    }
    let io = c.shards[1].io(v.key).unwrap();
    assert_eq!(
        io.close,
        Some(switchboard_protocol::CloseCode::SlowConsumer)
    );
    assert!(io.outbox.queued_bytes() <= 4096);
    // The agent was not affected.
    assert_eq!(c.shards[0].io(a.key).unwrap().close, None);
}

#[test]
fn rate_limit_refuses_then_closes_abusers() {
    let cfg = CoreConfig {
        rate_burst: 5.0,
        rate_per_sec: 1.0,
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(1, cfg, 0);
    let v = c.visitor(0, 1);
    c.frames(v);
    for i in 0..10 {
        c.send_json(v, msg(&format!("m{i}"), "x"));
    }
    let f = c.frames(v);
    let limited: Vec<&Value> = f.iter().filter(|x| x["code"] == "rate_limited").collect();
    assert_eq!(limited.len(), 5);
    assert_eq!(limited[0]["cid"], "m5");
    for i in 0..100 {
        c.send_json(v, msg(&format!("n{i}"), "x"));
    }
    assert_eq!(
        c.shards[0].io(v.key).unwrap().close,
        Some(switchboard_protocol::CloseCode::PolicyViolation)
    );
}

#[test]
fn bad_frames_get_errors_and_the_connection_keeps_working() {
    let mut c = Cluster::new(1, CoreConfig::default(), 0);
    let v = c.visitor(0, 1);
    c.frames(v);
    for (text, code) in [
        ("nope", "bad_json"),
        (r#"{"type":"fly"}"#, "unknown_type"),
        (r#"{"type":"msg","cid":"1"}"#, "missing_field"),
        (r#"{"type":"typing"}"#, "no_conversation"),
    ] {
        c.send(v, text);
        assert_eq!(c.frames(v)[0]["code"], code, "{text}");
    }
    c.shards[0].on_binary(v.key, c.now);
    assert_eq!(c.frames(v)[0]["code"], "binary_unsupported");
    c.send_json(v, msg("ok", "still here"));
    assert_eq!(c.of_type(v, "ack")[0]["seq"], 1);
}

#[test]
fn agent_tokens_from_the_cli_format_are_accepted_by_auth() {
    let signer = TokenSigner::new(b"cluster test secret!").unwrap();
    let t = signer.mint(TokenKind::Agent, "ann", 2_000_000_000);
    let id = switchboard_core::auth::authenticate(
        "/ws/agent",
        &format!("token={t}"),
        &signer,
        1_700_000_000,
        || VisitorId(0),
    )
    .unwrap();
    assert_eq!(id.who, ParticipantId::Agent(AgentId::new("ann").unwrap()));
}

/// Many visitors and agents on three shards, messages in both directions, delivery in random
/// interleavings: every participant sees each conversation's messages exactly once, in seq
/// order, and every message is acknowledged once.
#[test]
fn random_interleavings_deliver_everything_exactly_once_in_order() {
    for seed in 0..30 {
        let mut c = Cluster::new(
            3,
            CoreConfig {
                rate_burst: 1e6,
                ..CoreConfig::default()
            },
            seed,
        );
        let agents: Vec<Client> = (0..3).map(|i| c.agent(i, &format!("agent{i}"))).collect();
        let visitors: Vec<Client> = (0..12).map(|i| c.visitor(i % 3, i as u64 + 1)).collect();
        for a in &agents {
            c.frames(*a);
        }
        // Agents resume each conversation as they are told of it.
        let resume_all =
            |c: &mut Cluster, frames: &[Value], who: Client, known: &mut Vec<String>| {
                for f in frames.iter().filter(|f| f["type"] == "assigned") {
                    let text = serde_json::json!({"type":"resume","conv":f["conv"],"last_seq":0})
                        .to_string();
                    c.shards[who.shard].on_text(who.key, &text, c.now);
                    known.push(f["conv"].as_str().unwrap().to_string());
                }
            };
        let mut known: Vec<Vec<String>> = vec![Vec::new(); agents.len() + visitors.len()];
        let mut convs = Vec::new();
        for v in &visitors {
            c.frames(*v);
            c.send_json(*v, msg("open", "hello"));
            convs.push(
                c.of_type(*v, "ack")[0]["conv"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut seen: std::collections::HashMap<(usize, String), Vec<u64>> = Default::default();
        for (i, conv) in convs.iter().enumerate() {
            seen.insert((agents.len() + i, conv.clone()), vec![1]); // the opening message's ack
        }
        let record = |c: &mut Cluster,
                      idx: usize,
                      who: Client,
                      seen: &mut std::collections::HashMap<(usize, String), Vec<u64>>,
                      known: &mut Vec<Vec<String>>| {
            let frames = c.frames(who);
            resume_all(c, &frames, who, &mut known[idx]);
            for f in frames {
                if f["type"] == "msg" || f["type"] == "ack" {
                    seen.entry((idx, f["conv"].as_str().unwrap().into()))
                        .or_default()
                        .push(f["seq"].as_u64().unwrap());
                }
            }
        };
        for step in 0..300 {
            let i = rng.usize(..visitors.len());
            let text = msg(&format!("v{step}"), "x").to_string();
            c.shards[visitors[i].shard].on_text(visitors[i].key, &text, c.now);
            // Agents answer in the conversations they know (and, now and then, in one that
            // is not theirs, which is refused).
            let a = rng.usize(..agents.len());
            let conv = if known[a].is_empty() || rng.u8(..10) == 0 {
                &convs[rng.usize(..convs.len())]
            } else {
                &known[a][rng.usize(..known[a].len())]
            };
            if !known[a].contains(conv)
                && known.iter().take(agents.len()).all(|k| !k.contains(conv))
            {
                // Assigned to this agent but not yet read by it: a real client cannot know it.
                continue;
            }
            let text =
                serde_json::json!({"type":"msg","cid":format!("a{step}"),"body":"y","conv":conv})
                    .to_string();
            c.shards[agents[a].shard].on_text(agents[a].key, &text, c.now);
            // Deliver only part of the backlog now and then, to vary interleavings.
            if rng.bool() {
                c.settle();
            }
            for (idx, who) in agents.iter().chain(&visitors).enumerate() {
                record(&mut c, idx, *who, &mut seen, &mut known);
            }
        }
        c.settle();
        for (idx, who) in agents.iter().chain(&visitors).enumerate() {
            record(&mut c, idx, *who, &mut seen, &mut known);
        }
        // Each participant sees every seq of its conversations exactly once, as a message
        // from the other side or as an ack of its own, and messages arrive in order.
        let mut head: std::collections::HashMap<&str, u64> = Default::default();
        for ((_, conv), s) in &seen {
            let h = head.entry(conv.as_str()).or_default();
            *h = (*h).max(*s.iter().max().unwrap());
        }
        for ((who, conv), s) in &seen {
            let mut sorted = s.clone();
            sorted.sort_unstable();
            let expected: Vec<u64> = (1..=head[conv.as_str()]).collect();
            assert_eq!(sorted, expected, "seed {seed}: participant {who} in {conv}");
        }
        assert_eq!(head.len(), convs.len());
    }
}

#[allow(dead_code)]
fn _frame_is_bytes(_: Bytes) {}

#[test]
fn short_deadline_with_pongs_stays_open() {
    let cfg = CoreConfig {
        idle_web: Duration::from_secs(2),
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(1, cfg, 0);
    c.now.mono_ms = 1;
    let v = c.visitor(0, 1);
    for step in 0..40 {
        c.advance(250);
        let io = c.shards[0].io(v.key).unwrap();
        assert_eq!(io.close, None, "closed at step {step}");
        if io.ping_due {
            io.ping_due = false;
            // The pong comes back 5 ms later.
            let now = Now {
                mono_ms: c.now.mono_ms + 5,
                ..c.now
            };
            c.shards[0].touch(v.key, now);
        }
    }
}

#[test]
fn a_new_conversation_lives_on_its_visitors_shard() {
    let mut c = Cluster::new(4, CoreConfig::default(), 3);
    for shard in 0..4 {
        let v = c.visitor(shard, 100 + shard as u64);
        c.send_json(v, msg("m", "hi"));
        let conv = c.of_type(v, "ack")[0]["conv"].as_str().unwrap().to_string();
        let id = switchboard_protocol::ConvId::parse(&conv).unwrap();
        assert_eq!(switchboard_core::routing::home_shard(id, 4), shard as u32);
    }
}

fn idle_close_after(seconds: u64, agent_capacity: u32) -> CoreConfig {
    CoreConfig {
        agent_capacity,
        conversation_idle_close: Some(Duration::from_secs(seconds)),
        idle_web: Duration::from_secs(86_400),
        ..CoreConfig::default()
    }
}

/// The conversation a visitor's first message opened, and the position it was queued at
/// (if it was). Reads the visitor's frames.
fn opened(c: &mut Cluster, v: Client) -> (String, Option<u64>) {
    let frames = c.frames(v);
    let of = |ty: &str| frames.iter().find(|f| f["type"] == ty);
    (
        of("ack").unwrap()["conv"].as_str().unwrap().to_string(),
        of("queued").map(|q| q["position"].as_u64().unwrap()),
    )
}

#[test]
fn a_conversation_nobody_writes_in_is_closed_and_its_agent_gets_the_next_one() {
    let mut c = Cluster::new(2, idle_close_after(60, 1), 3);
    let a = c.agent(0, "ann");
    let v1 = c.visitor(1, 1);
    let v2 = c.visitor(0, 2);
    c.send_json(v1, msg("m1", "hi"));
    c.send_json(v2, msg("m1", "hello"));
    let (conv1, _) = opened(&mut c, v1);
    let (conv2, queued) = opened(&mut c, v2);
    assert_eq!(queued, Some(1));
    c.frames_resuming(a);
    for _ in 0..30 {
        c.advance(1_000);
    }
    // Writing keeps a conversation open, even one still waiting for an agent.
    c.send_json(v2, msg("m2", "still there?"));
    for _ in 0..29 {
        c.advance(1_000);
    }
    assert!(c.of_type(v1, "closed").is_empty(), "not idle for 60 s yet");
    c.advance(1_000);
    c.advance(1_000);
    assert_eq!(
        c.of_type(v1, "closed"),
        vec![serde_json::json!({"type":"closed","conv":conv1,"reason":"idle"})]
    );
    let to_ann = c.frames(a);
    let of = |ty: &str| -> Vec<&Value> { to_ann.iter().filter(|f| f["type"] == ty).collect() };
    assert_eq!(of("closed")[0]["conv"], conv1.as_str());
    assert_eq!(
        of("assigned")[0]["conv"],
        conv2.as_str(),
        "ann's place freed"
    );
    assert_eq!(c.of_type(v2, "agent_joined").len(), 1);
    // The closed conversation refuses messages; v2's, written in at 30 s, closes at 90 s.
    c.send_json(
        a,
        serde_json::json!({"type":"msg","cid":"late","body":"x","conv":conv1}),
    );
    assert_eq!(c.of_type(a, "error")[0]["code"], "conversation_closed");
    for _ in 0..27 {
        c.advance(1_000);
    }
    assert!(c.of_type(v2, "closed").is_empty());
    for _ in 0..3 {
        c.advance(1_000);
    }
    assert_eq!(c.of_type(v2, "closed")[0]["reason"], "idle");
    let idle_closed: u64 = c.shards.iter().map(|s| s.stats().idle_closed).sum();
    assert_eq!(idle_closed, 2);
}

#[test]
fn an_idle_conversation_waiting_for_an_agent_leaves_the_queue() {
    let mut c = Cluster::new(2, idle_close_after(60, 1), 5);
    let v1 = c.visitor(1, 1);
    let v2 = c.visitor(0, 2);
    c.send_json(v1, msg("m1", "anyone?"));
    for _ in 0..30 {
        c.advance(1_000);
    }
    c.send_json(v2, msg("m1", "hello"));
    let (conv2, queued) = opened(&mut c, v2);
    assert_eq!(queued, Some(2));
    for _ in 0..31 {
        c.advance(1_000);
    }
    assert_eq!(c.of_type(v1, "closed")[0]["reason"], "idle");
    assert_eq!(c.of_type(v2, "queued").last().unwrap()["position"], 1);
    // The first agent gets the conversation still open, not the closed one.
    let a = c.agent(1, "ann");
    let assigned = c.of_type(a, "assigned");
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0]["conv"], conv2.as_str());
}

#[test]
fn with_idle_close_off_conversations_stay_open() {
    let cfg = CoreConfig {
        conversation_idle_close: None,
        idle_web: Duration::from_secs(86_400),
        ..CoreConfig::default()
    };
    let mut c = Cluster::new(1, cfg, 6);
    let v = c.visitor(0, 1);
    c.send_json(v, msg("m1", "hi"));
    for _ in 0..120 {
        c.advance(60_000);
    }
    assert!(c.of_type(v, "closed").is_empty());
}

#[test]
fn resume_and_history_with_extreme_numbers_answer_without_panicking() {
    let mut c = Cluster::new(2, CoreConfig::default(), 8);
    let v = c.visitor(0, 1);
    c.send_json(v, msg("m1", "hi"));
    let (conv, _) = opened(&mut c, v);
    c.send_json(
        v,
        serde_json::json!({"type":"resume","conv":conv,"last_seq":u64::MAX}),
    );
    let resumed = c.of_type(v, "resumed");
    assert_eq!(resumed[0]["replayed"], 0, "nothing is after the newest");
    for before in [0, 1, u64::MAX] {
        c.send_json(
            v,
            serde_json::json!({"type":"history","conv":conv,"before":before,"limit":u64::MAX}),
        );
        assert_eq!(c.of_type(v, "history").len(), 1, "before {before}");
    }
    c.send_json(
        v,
        serde_json::json!({"type":"read","conv":conv,"seq":u64::MAX}),
    );
    c.send_json(v, msg("m2", "still fine"));
    assert_eq!(c.of_type(v, "ack")[0]["seq"], 2);
}

/// Any sequence of frames, valid or not, with numbers at their extremes, from visitors and
/// agents on several shards, with time passing and clients leaving: no shard panics, and
/// the shards keep serving.
#[test]
fn random_frames_and_extreme_numbers_never_break_a_shard() {
    let numbers = [0u64, 1, 2, 255, u32::MAX as u64, i64::MAX as u64, u64::MAX];
    for seed in 0..40 {
        let mut c = Cluster::new(
            3,
            CoreConfig {
                agent_capacity: 2,
                conversation_idle_close: Some(Duration::from_secs(5)),
                rate_burst: 1e6,
                ..CoreConfig::default()
            },
            seed,
        );
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut clients: Vec<Client> = Vec::new();
        for i in 0..3 {
            clients.push(c.agent(i, &format!("ag{i}")));
        }
        for i in 0..6 {
            clients.push(c.visitor(i % 3, i as u64 + 100));
        }
        let mut convs: Vec<String> = vec!["c0000000000000000".into(), "cffffffffffffffff".into()];
        for step in 0..300 {
            let who = clients[rng.usize(..clients.len())];
            let conv = convs[rng.usize(..convs.len())].clone();
            let n = numbers[rng.usize(..numbers.len())];
            let frame = match rng.u8(..10) {
                0 => msg(&format!("m{step}"), "hello"),
                1 => {
                    serde_json::json!({"type":"msg","cid":format!("m{step}"),"body":"x","conv":conv})
                }
                2 => serde_json::json!({"type":"resume","conv":conv,"last_seq":n}),
                3 => {
                    serde_json::json!({"type":"history","conv":conv,"before":n,"limit":numbers[rng.usize(..numbers.len())]})
                }
                4 => serde_json::json!({"type":"history"}),
                5 => serde_json::json!({"type":"read","conv":conv,"seq":n}),
                6 => serde_json::json!({"type":"typing"}),
                7 => serde_json::json!({"type":"close","conv":conv}),
                8 => {
                    c.advance(rng.u64(0..3_000));
                    continue;
                }
                _ => {
                    // A client leaves and another (a returning visitor) arrives.
                    let i = rng.usize(3..clients.len());
                    c.disconnect(clients[i]);
                    let returning = rng.bool();
                    clients[i] = c.connect_as(
                        rng.usize(..3),
                        ParticipantId::Visitor(VisitorId(i as u64 + 100)),
                        returning,
                    );
                    continue;
                }
            };
            c.send_json(who, frame);
            for f in c.frames(who) {
                if let Some(conv) = f["conv"].as_str() {
                    if !convs.iter().any(|k| k == conv) {
                        convs.push(conv.to_string());
                    }
                }
            }
        }
        // Still serving: a new visitor's message is acked and sequenced.
        let v = c.visitor(0, 999);
        c.send_json(v, msg("last", "still there?"));
        assert_eq!(c.of_type(v, "ack")[0]["seq"], 1, "seed {seed}");
    }
}

#[test]
fn a_returning_visitor_that_does_not_name_its_conversation_is_put_back_in_it() {
    let mut c = Cluster::new(3, CoreConfig::default(), 11);
    let a = c.agent(0, "ann");
    let v = c.visitor(1, 7);
    c.send_json(v, msg("m1", "my order is late"));
    let (conv, _) = opened(&mut c, v);
    c.frames_resuming(a);
    c.disconnect(v);
    // Back on another shard with its token; it kept no conversation id.
    let v = c.connect_as(2, ParticipantId::Visitor(VisitorId(7)), true);
    c.frames(v);
    c.send_json(v, serde_json::json!({"type":"history","limit":5}));
    c.send_json(v, msg("m2", "still here"));
    let frames = c.frames(v);
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types, ["resumed", "history", "ack"], "{frames:?}");
    assert_eq!(frames[0]["conv"], conv.as_str());
    assert_eq!(frames[0]["last_seq"], 1);
    assert_eq!(frames[1]["messages"][0]["body"], "my order is late");
    assert_eq!(
        (frames[2]["conv"].as_str(), frames[2]["seq"].as_u64()),
        (Some(&*conv), Some(2))
    );
    // The agent gets it in the same conversation, and its answer reaches the new connection.
    assert_eq!(seqs(&c.frames(a)), vec![2]);
    c.send_json(
        a,
        serde_json::json!({"type":"msg","cid":"a1","body":"on its way","conv":conv}),
    );
    assert_eq!(seqs(&c.frames(v)), vec![3]);
    // Only agents and a closed conversation end it: then the next message opens a new one.
    c.send_json(a, serde_json::json!({"type":"close","conv":conv}));
    c.disconnect(v);
    let v = c.connect_as(1, ParticipantId::Visitor(VisitorId(7)), true);
    c.send_json(v, msg("m3", "one more thing"));
    let (again, _) = opened(&mut c, v);
    assert_ne!(again, conv);
}

#[test]
fn a_visitor_that_resumes_by_itself_or_is_new_is_not_looked_up() {
    let mut c = Cluster::new(2, CoreConfig::default(), 12);
    let v = c.visitor(1, 8);
    c.send_json(v, msg("m1", "hello"));
    let (conv, _) = opened(&mut c, v);
    c.disconnect(v);
    let v = c.connect_as(0, ParticipantId::Visitor(VisitorId(8)), true);
    c.frames(v);
    c.send_json(
        v,
        serde_json::json!({"type":"resume","conv":conv,"last_seq":1}),
    );
    c.send_json(v, msg("m2", "again"));
    let frames = c.frames(v);
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types, ["resumed", "ack"], "one resume, the client's own");
    assert_eq!(frames[1]["seq"], 2);
    // A new visitor's first message opens its conversation at once.
    let fresh = c.visitor(0, 9);
    c.send_json(fresh, msg("m1", "hi"));
    let (other, _) = opened(&mut c, fresh);
    assert_ne!(other, conv);
}
