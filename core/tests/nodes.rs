//! Several gateway nodes in one thread: every node's shards, one shared model of the store
//! (with lease epochs, so it fences as PostgreSQL does), and the membership each node sees
//! set by hand. A shard message that crosses nodes goes through JSON, as it does through
//! Redis. These are the cluster's guarantees without sockets: a conversation whose home node
//! dies resumes at its new home with the same seqs, no message lost or doubled; a new
//! dispatcher learns every agent again; a home cut off from the others is fenced off by the
//! store and never names a seq twice.

mod node;

use node::{answer, cfg, msg, web_identity, MemStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchboard_core::routing::{global, node_of, ClusterView, NodeNum, NodeSlot};
use switchboard_core::{ConnKey, Now, Shard, ShardId, ShardMsg};
use switchboard_protocol::bridge::decode;
use switchboard_protocol::token::TokenSigner;
use switchboard_protocol::{AgentId, CloseCode, ConvId, ParticipantId, VisitorId};

const SHARDS: u32 = 2;

struct Nodes {
    shards: BTreeMap<ShardId, Shard>,
    store: MemStore,
    now: Now,
    /// Shard messages that crossed nodes.
    crossed: usize,
}

#[derive(Clone, Copy, Debug)]
struct Client {
    shard: ShardId,
    key: ConnKey,
}

impl Nodes {
    fn new(nums: &[NodeNum]) -> Self {
        let signer = TokenSigner::new(b"cluster test secret!").unwrap();
        let mut shards = BTreeMap::new();
        for &num in nums {
            for i in 0..SHARDS {
                let id = global(num, i);
                let s = Shard::new(id, SHARDS, cfg(), signer.clone(), id as u64);
                shards.insert(id, s);
            }
        }
        let mut n = Self {
            shards,
            store: MemStore::default(),
            now: Now {
                mono_ms: 1_000,
                unix_ms: 1_700_000_000_000,
            },
            crossed: 0,
        };
        n.see(nums, nums);
        n
    }

    /// The nodes `on` see `live` as the live nodes.
    fn see(&mut self, on: &[NodeNum], live: &[NodeNum]) {
        let slots: Vec<NodeSlot> = live
            .iter()
            .map(|&num| NodeSlot {
                num,
                shards: SHARDS,
            })
            .collect();
        for (&id, s) in self.shards.iter_mut() {
            if on.contains(&node_of(id)) {
                s.set_view(ClusterView::of(node_of(id), slots.clone()), self.now);
            }
        }
        self.settle();
    }

    /// Node `num` dies: its shards are gone, and whatever was sent to them is lost.
    fn kill(&mut self, num: NodeNum) {
        self.shards.retain(|&id, _| node_of(id) != num);
    }

    fn settle(&mut self) {
        loop {
            let mut mail: Vec<(ShardId, ShardId, ShardMsg)> = Vec::new();
            let mut moved = false;
            for (&id, s) in self.shards.iter_mut() {
                mail.extend(s.take_outgoing().into_iter().map(|(to, m)| (id, to, m)));
                let mut wire = Vec::new();
                s.write_bridge_requests(&mut wire, 0, self.now);
                while let Some(r) = decode(&mut wire).unwrap() {
                    moved = true;
                    answer(&mut self.store, s, r, self.now);
                }
            }
            for (from, to, m) in mail {
                moved = true;
                let m = if node_of(from) != node_of(to) {
                    self.crossed += 1;
                    serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap()
                } else {
                    m
                };
                if let Some(s) = self.shards.get_mut(&to) {
                    s.on_shard_msg(from, m, self.now);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn connect(&mut self, shard: ShardId, who: ParticipantId, resumed: bool) -> Client {
        let key = self
            .shards
            .get_mut(&shard)
            .unwrap()
            .connect(web_identity(who, resumed), self.now);
        self.settle();
        Client { shard, key }
    }

    fn visitor(&mut self, shard: ShardId, id: u64) -> Client {
        self.connect(shard, ParticipantId::Visitor(VisitorId(id)), false)
    }

    fn agent(&mut self, shard: ShardId, name: &str) -> Client {
        self.connect(
            shard,
            ParticipantId::Agent(AgentId::new(name).unwrap()),
            false,
        )
    }

    fn send(&mut self, c: Client, v: Value) {
        let s = self.shards.get_mut(&c.shard).unwrap();
        s.on_text(c.key, &v.to_string(), self.now);
        self.settle();
    }

    fn frames(&mut self, c: Client) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let s = self.shards.get_mut(&c.shard).unwrap();
            let io = s.io(c.key).expect("connection exists");
            while let Some(f) = io.outbox.pop() {
                out.push(serde_json::from_slice::<Value>(&f).unwrap());
            }
            if !io.drain_wanted {
                return out;
            }
            s.on_drained(c.key, self.now);
            self.settle();
        }
    }

    /// Reads a client's frames, resuming every conversation it is `assigned` from the start.
    fn frames_resuming(&mut self, c: Client) -> Vec<Value> {
        let mut out = Vec::new();
        let mut pending = self.frames(c);
        while !pending.is_empty() {
            for f in &pending {
                if f["type"] == "assigned" {
                    self.send(c, json!({"type":"resume","conv":f["conv"],"last_seq":0}));
                }
            }
            out.append(&mut pending);
            pending = self.frames(c);
        }
        out
    }

    fn close_code(&mut self, c: Client) -> Option<CloseCode> {
        self.shards.get_mut(&c.shard)?.io(c.key)?.close
    }

    fn home_node(&self, conv: ConvId) -> NodeNum {
        let any = self.shards.values().next().unwrap();
        node_of(any.view().home(conv))
    }
}

fn of_type<'a>(frames: &'a [Value], ty: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == ty).collect()
}

fn bodies(frames: &[Value]) -> Vec<String> {
    of_type(frames, "msg")
        .iter()
        .map(|f| f["body"].as_str().unwrap().to_string())
        .collect()
}

/// A visitor on `node` (shard 0) with a new conversation: visitors' conversations are
/// homed on their own shard (the gateway picks their ids so), until membership changes.
fn visitor_with_conv(n: &mut Nodes, node: NodeNum, id: u64) -> (Client, ConvId) {
    let v = n.visitor(global(node, 0), id);
    n.send(v, msg("hello", "hello"));
    let frames = n.frames(v);
    let ack = of_type(&frames, "ack")[0].clone();
    let conv = ConvId::parse(ack["conv"].as_str().unwrap()).unwrap();
    assert_eq!(n.home_node(conv), node);
    (v, conv)
}

#[test]
fn a_visitor_and_an_agent_on_different_nodes_talk() {
    let mut n = Nodes::new(&[3, 5, 9]);
    let a = n.agent(global(9, 1), "ann");
    let (v, conv) = visitor_with_conv(&mut n, 5, 1);
    let got = n.frames_resuming(a);
    assert_eq!(bodies(&got), ["hello"], "{got:?}");
    n.send(
        a,
        json!({"type":"msg","cid":"a1","body":"hi","conv":conv.to_string()}),
    );
    assert_eq!(of_type(&n.frames(a), "ack")[0]["seq"], 2);
    assert_eq!(bodies(&n.frames(v)), ["hi"]);
    assert!(n.crossed > 0);
}

#[test]
fn a_conversation_whose_home_node_dies_resumes_at_its_new_home() {
    let mut n = Nodes::new(&[3, 5, 9]);
    let a = n.agent(global(5, 1), "ann");
    let (v, conv) = visitor_with_conv(&mut n, 9, 1);
    n.frames_resuming(a);
    for i in 0..3 {
        n.send(v, msg(&format!("v{i}"), &format!("visitor {i}")));
        n.send(
            a,
            json!({"type":"msg","cid":format!("a{i}"),"body":format!("agent {i}"),"conv":conv.to_string()}),
        );
    }
    let seen_by_visitor = n.frames(v);
    let last_seen = of_type(&seen_by_visitor, "msg")
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    n.frames(a);

    // Node 9 dies with the visitor's connection; the others see it gone.
    n.kill(9);
    n.see(&[3, 5], &[3, 5]);
    assert_eq!(n.close_code(a), Some(CloseCode::GoingAway));
    assert_ne!(n.home_node(conv), 9);

    // Both reconnect (the visitor to node 3) and resume; the visitor sends its last message
    // again (as if its ack was lost): the new home knows its cid.
    let v2 = n.connect(global(3, 0), ParticipantId::Visitor(VisitorId(1)), true);
    n.send(
        v2,
        json!({"type":"resume","conv":conv.to_string(),"last_seq":last_seen}),
    );
    n.send(v2, msg("v2", "visitor 2"));
    let frames = n.frames(v2);
    let acks = of_type(&frames, "ack");
    assert_eq!(acks.len(), 1, "{frames:?}");
    let stored_v2 = n
        .store
        .messages
        .values()
        .find(|m| m.cid == "v2")
        .unwrap()
        .seq;
    assert_eq!(acks[0]["seq"], stored_v2, "a resend keeps its seq");
    n.send(v2, msg("v3", "after the move"));
    let after = of_type(&n.frames(v2), "ack")[0]["seq"].as_u64().unwrap();
    assert!(after > stored_v2);

    let a2 = n.agent(global(5, 0), "ann");
    let got = n.frames_resuming(a2);
    let mut seqs: Vec<u64> = of_type(&got, "msg")
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    let all = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), all, "no message twice: {seqs:?}");
    let bodies = bodies(&got);
    assert_eq!(bodies.len(), 8, "{bodies:?}");
    assert_eq!(bodies.last().unwrap(), "after the move");
}

#[test]
fn a_new_dispatcher_learns_every_agent_again() {
    let mut n = Nodes::new(&[3, 5, 9]);
    let a = n.agent(global(5, 1), "ann");
    n.frames(a);
    n.kill(3);
    n.see(&[5, 9], &[5, 9]);
    let v = n.visitor(global(9, 0), 77);
    n.send(v, msg("c1", "anyone there?"));
    let got = n.frames_resuming(a);
    assert_eq!(bodies(&got), ["anyone there?"], "{got:?}");
}

#[test]
fn a_home_cut_off_from_the_cluster_is_fenced_and_never_reuses_a_seq() {
    let mut n = Nodes::new(&[3, 5]);
    let a = n.agent(global(3, 1), "ann");
    let (v, conv) = visitor_with_conv(&mut n, 5, 1);
    n.frames_resuming(a);
    // Node 3 loses sight of node 5 (node 5 still sees both): the agent's connection
    // follows a conversation that moved, so it is closed, and it resumes at node 3.
    n.see(&[3], &[3]);
    assert_eq!(n.close_code(a), Some(CloseCode::GoingAway));
    let a2 = n.agent(global(3, 0), "ann");
    n.send(
        a2,
        json!({"type":"resume","conv":conv.to_string(),"last_seq":0}),
    );
    n.send(
        a2,
        json!({"type":"msg","cid":"x1","body":"from the new home","conv":conv.to_string()}),
    );
    assert_eq!(of_type(&n.frames(a2), "ack").len(), 1);
    // The visitor still writes to the old home on node 5, which sequences within its
    // lease until it asks for more: the store refuses (the new home took the lease since).
    for i in 0..node::LEASE {
        if n.close_code(v).is_some() {
            break;
        }
        n.send(v, msg(&format!("v{i}"), &format!("old home {i}")));
    }
    assert_eq!(
        n.close_code(v),
        Some(CloseCode::GoingAway),
        "the fenced home closes its subscribers"
    );
    let fenced = n.shards.values().map(|s| s.stats().fenced).sum::<u64>();
    assert_eq!(fenced, 1);
    // Every (conv, seq) names one message (the model store asserts it on every write), and
    // the new home's seqs are all above the old home's.
    let new_seq = n
        .store
        .messages
        .values()
        .find(|m| m.cid == "x1")
        .unwrap()
        .seq;
    let old_max = n
        .store
        .messages
        .values()
        .filter(|m| m.cid.starts_with('v'))
        .map(|m| m.seq)
        .max()
        .unwrap();
    assert!(new_seq > old_max, "{new_seq} > {old_max}");
}

#[test]
fn an_agents_devices_on_different_nodes_stay_in_step() {
    let mut n = Nodes::new(&[3, 5, 9]);
    let d1 = n.agent(global(5, 0), "ann");
    let d2 = n.agent(global(9, 1), "ann");
    n.frames(d1);
    n.frames(d2);
    // Away on one device: the other hears it, through the dispatcher on node 3.
    n.send(d1, json!({"type":"presence","status":"away"}));
    for d in [d1, d2] {
        let got = n.frames(d);
        assert_eq!(of_type(&got, "presence")[0]["status"], "away", "{got:?}");
    }
    n.send(d2, json!({"type":"presence","status":"online"}));
    assert_eq!(of_type(&n.frames(d1), "presence")[0]["status"], "online");
    n.frames(d2);
    // A conversation: both devices are told and both get its messages.
    let (v, conv) = visitor_with_conv(&mut n, 3, 1);
    for d in [d1, d2] {
        assert_eq!(bodies(&n.frames_resuming(d)), ["hello"]);
    }
    n.send(
        d2,
        json!({"type":"msg","cid":"a1","body":"from the phone","conv":conv.to_string()}),
    );
    assert_eq!(bodies(&n.frames(d1)), ["from the phone"]);
    assert_eq!(bodies(&n.frames(v)), ["from the phone"]);
}

#[test]
fn an_agent_that_came_before_its_node_saw_the_others_reaches_the_dispatcher_once() {
    let mut n = Nodes::new(&[3, 5]);
    // Node 5 has not seen node 3 yet (it is just starting, or Redis was away): it takes
    // itself for the dispatcher's node, and its agent is announced there.
    n.see(&[5], &[5]);
    let a = n.agent(global(5, 1), "ann");
    n.frames(a);
    // Node 5 sees node 3: its agent is announced to node 3's dispatcher (and once only).
    n.see(&[5], &[3, 5]);
    let (v, _) = visitor_with_conv(&mut n, 3, 1);
    assert_eq!(bodies(&n.frames_resuming(a)), ["hello"]);
    n.frames(v);
    // Node 5 loses sight of node 3 and finds it again: its agent is announced to node 5's
    // own dispatcher twice (by its shard, and by that dispatcher asking), then to node 3's
    // again. Each counts once: when it leaves, nobody is online.
    n.see(&[5], &[5]);
    n.see(&[5], &[3, 5]);
    n.shards.get_mut(&a.shard).unwrap().disconnect(a.key);
    n.settle();
    let v2 = n.visitor(global(3, 0), 2);
    n.send(v2, msg("w", "anyone?"));
    let queued = of_type(&n.frames(v2), "queued")[0].clone();
    assert_eq!(queued["offline"], true, "nobody is online: {queued}");
}
