//! A gateway node in one thread, for the core's durability tests: shards wired to each other
//! and to a model of the storage bridge that answers the link protocol as the real one does
//! (pages, seq leases), with requests that can be held back to watch what waits for them.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use switchboard_core::{ClientKind, ConnKey, CoreConfig, Identity, Now, Shard, ShardMsg};
use switchboard_protocol::bridge::{
    decode, fitting, BridgeMsg, ConvEvent, ConvInfo, OpenConv, SeenCid, StoredMessage, PAGE_BYTES,
};
use switchboard_protocol::token::TokenSigner;
use switchboard_protocol::{ConvId, ParticipantId, VisitorId};

/// A model of the storage bridge: the same answers, including pages and seq leases.
#[derive(Default, Clone)]
pub struct MemStore {
    pub messages: BTreeMap<(u64, u64), StoredMessage>,
    pub convs: HashMap<u64, (VisitorId, Option<String>, bool)>,
    pub leases: HashMap<u64, u64>,
    /// Each lease's epoch, raised by every load (the fencing token of a home).
    pub epochs: HashMap<u64, u64>,
    /// Conversations whose lease extensions the last `persist` refused (stale epoch): the
    /// bridge says `fenced` before `persisted`.
    pub fenced_out: Vec<ConvId>,
    /// Conversations' sites (none: the default site).
    pub sites: HashMap<u64, String>,
    /// Visitors' ratings.
    pub ratings: HashMap<u64, u8>,
    /// Agents online, as the dispatcher shard says.
    pub online: std::collections::BTreeSet<String>,
    /// Reads (history, replay pages) fail.
    pub fail_reads: bool,
}

impl MemStore {
    /// The answer to a request; none for what the gateway only tells (presence).
    pub fn answer(&mut self, req: BridgeMsg) -> Option<BridgeMsg> {
        if let BridgeMsg::Presence {
            online,
            offline,
            full,
        } = req
        {
            if full {
                self.online.clear();
            }
            self.online.extend(online);
            for a in offline {
                self.online.remove(&a);
            }
            return None;
        }
        Some(match req {
            BridgeMsg::Persist {
                req,
                messages,
                events,
            } => {
                for e in events {
                    match e {
                        ConvEvent::Opened {
                            conv,
                            visitor,
                            lease,
                            site,
                            ..
                        } => {
                            self.convs.entry(conv.0).or_insert((visitor, None, false));
                            if let Some(site) = site {
                                self.sites.insert(conv.0, site);
                            }
                            let l = self.leases.entry(conv.0).or_default();
                            *l = (*l).max(lease);
                        }
                        ConvEvent::SeqLease { conv, upto, epoch } => {
                            if self.epochs.get(&conv.0).copied().unwrap_or(0) != epoch {
                                self.fenced_out.push(conv);
                                continue;
                            }
                            let l = self.leases.entry(conv.0).or_default();
                            *l = (*l).max(upto);
                        }
                        ConvEvent::SeqRelease { conv, at, held } => {
                            if let Some(l) = self.leases.get_mut(&conv.0) {
                                if *l <= held {
                                    *l = (*l).min(at);
                                }
                            }
                        }
                        ConvEvent::Assigned { conv, agent, .. } => {
                            self.convs.get_mut(&conv.0).unwrap().1 = Some(agent)
                        }
                        ConvEvent::Closed { conv, .. } => {
                            self.convs.get_mut(&conv.0).unwrap().2 = true
                        }
                        ConvEvent::Rated { conv, score, .. } => {
                            self.ratings.insert(conv.0, score);
                        }
                        ConvEvent::Context { .. } => {}
                    }
                }
                for m in messages {
                    if let Some(x) = self.messages.get(&(m.conv.0, m.seq)) {
                        assert!(
                            x.sender == m.sender && x.cid == m.cid && x.body == m.body,
                            "({}, {}) names two messages: {x:?} and {m:?}",
                            m.conv,
                            m.seq
                        );
                    }
                    let dup = self
                        .messages
                        .values()
                        .any(|x| x.conv == m.conv && x.sender == m.sender && x.cid == m.cid);
                    if !dup {
                        self.messages.entry((m.conv.0, m.seq)).or_insert(m);
                    }
                }
                BridgeMsg::Persisted { req }
            }
            BridgeMsg::LoadConv {
                req,
                conv,
                recent,
                cids,
                lease,
            } => {
                let last_seq = self
                    .messages
                    .range((conv.0, 0)..=(conv.0, u64::MAX))
                    .last()
                    .map_or(0, |(k, _)| k.1);
                let floor = self.leases.get(&conv.0).copied().unwrap_or(0).max(last_seq);
                let epoch = self.epochs.get(&conv.0).copied().unwrap_or(0) + 1;
                let info = self.convs.get(&conv.0).map(|(visitor, agent, closed)| {
                    let seen = self.history(conv, 0, u64::MAX, cids);
                    ConvInfo {
                        visitor: *visitor,
                        agent: agent.clone(),
                        site: self.sites.get(&conv.0).cloned(),
                        closed: *closed,
                        last_seq,
                        seq_floor: floor,
                        seq_lease: floor + lease,
                        epoch,
                        recent: self.history(conv, 0, u64::MAX, recent),
                        cids: seen
                            .into_iter()
                            .map(|m| SeenCid {
                                seq: m.seq,
                                sender: m.sender,
                                cid: m.cid,
                            })
                            .collect(),
                    }
                });
                if info.is_some() {
                    self.leases.insert(conv.0, floor + lease);
                    self.epochs.insert(conv.0, epoch);
                }
                BridgeMsg::ConvLoaded { req, conv, info }
            }
            BridgeMsg::OpenConvs { req, after, limit } => {
                let mut open: Vec<OpenConv> = self
                    .convs
                    .iter()
                    .filter(|(c, (_, _, closed))| !closed && after.is_none_or(|a| **c > a.0))
                    .map(|(c, (visitor, agent, _))| OpenConv {
                        conv: ConvId(*c),
                        visitor: *visitor,
                        agent: agent.clone(),
                        site: self.sites.get(c).cloned(),
                    })
                    .collect();
                open.sort_by_key(|o| o.conv.0);
                let full = open.len() > limit as usize;
                open.truncate(limit as usize);
                let next = full.then(|| open.last().map(|o| o.conv)).flatten();
                BridgeMsg::OpenConvsAre {
                    req,
                    convs: open,
                    next,
                }
            }
            BridgeMsg::History { req, .. } if self.fail_reads => BridgeMsg::Failed {
                req,
                reason: "reads fail".into(),
            },
            BridgeMsg::History {
                req,
                conv,
                after,
                before,
                limit,
                oldest_first,
                bytes,
            } => {
                let all: Vec<StoredMessage> = self
                    .messages
                    .range((conv.0, after + 1)..(conv.0, before))
                    .map(|(_, m)| m.clone())
                    .collect();
                let mut page: Vec<StoredMessage> = if oldest_first {
                    all.iter().take(limit as usize).cloned().collect()
                } else {
                    let skip = all.len().saturating_sub(limit as usize);
                    all.iter().skip(skip).cloned().collect()
                };
                let budget = (bytes as usize).min(PAGE_BYTES);
                let fetched = page.len();
                if oldest_first {
                    page.truncate(fitting(&page, budget));
                } else {
                    page.reverse();
                    page.truncate(fitting(&page, budget));
                    page.reverse();
                }
                BridgeMsg::HistoryIs {
                    req,
                    conv,
                    more: fetched < all.len() || page.len() < fetched,
                    messages: page,
                }
            }
            other => panic!("unexpected request {other:?}"),
        })
    }

    pub fn history(&self, conv: ConvId, after: u64, before: u64, limit: u32) -> Vec<StoredMessage> {
        let v: Vec<StoredMessage> = self
            .messages
            .range((conv.0, after + 1)..(conv.0, before))
            .map(|(_, m)| m.clone())
            .collect();
        let skip = v.len().saturating_sub(limit as usize);
        v.into_iter().skip(skip).collect()
    }
}

pub struct Node {
    pub shards: Vec<Shard>,
    pub store: MemStore,
    /// Requests held back (to observe acks waiting), per shard.
    pub held: Vec<Vec<BridgeMsg>>,
    pub hold: bool,
    pub now: Now,
}

/// The seq lease a conversation takes (`CoreConfig::default()`): after a restart its seqs
/// go on above it.
pub const LEASE: u64 = 128;

#[derive(Clone, Copy)]
pub struct Client {
    pub shard: usize,
    pub key: ConnKey,
}

pub fn cfg() -> CoreConfig {
    CoreConfig {
        durable: true,
        window: 4,
        rate_burst: 1e6,
        ..CoreConfig::default()
    }
}

impl Node {
    pub fn new(n: usize, cfg: CoreConfig, store: MemStore) -> Self {
        let signer = TokenSigner::new(b"durable test secret!").unwrap();
        Self {
            shards: (0..n)
                .map(|i| {
                    Shard::new(
                        i as u32,
                        n as u32,
                        cfg.clone(),
                        signer.clone(),
                        7 + i as u64,
                    )
                })
                .collect(),
            store,
            held: vec![Vec::new(); n],
            hold: false,
            now: Now {
                mono_ms: 1,
                unix_ms: 1_700_000_000_000,
            },
        }
    }

    pub fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.shards.len() {
                for (to, msg) in self.shards[i].take_outgoing() {
                    moved = true;
                    let to = to as usize;
                    let msg: ShardMsg = msg;
                    self.shards[to].on_shard_msg(i as u32, msg, self.now);
                }
                let mut wire = Vec::new();
                self.shards[i].write_bridge_requests(&mut wire, 0, self.now);
                let reqs = std::iter::from_fn(|| decode(&mut wire).unwrap()).collect::<Vec<_>>();
                if self.hold {
                    self.held[i].extend(reqs);
                } else {
                    for r in reqs {
                        moved = true;
                        answer(&mut self.store, &mut self.shards[i], r, self.now);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    pub fn release(&mut self) {
        self.hold = false;
        for i in 0..self.shards.len() {
            for r in std::mem::take(&mut self.held[i]) {
                answer(&mut self.store, &mut self.shards[i], r, self.now);
            }
        }
        self.settle();
    }

    pub fn disconnect(&mut self, c: Client) {
        self.shards[c.shard].disconnect(c.key);
        self.settle();
    }

    pub fn connect(&mut self, shard: usize, who: ParticipantId) -> Client {
        self.connect_as(shard, who, false)
    }

    /// `resumed`: the client presented its token (a returning visitor).
    pub fn connect_as(&mut self, shard: usize, who: ParticipantId, resumed: bool) -> Client {
        let key = self.shards[shard].connect(web_identity(who, resumed), self.now);
        self.settle();
        Client { shard, key }
    }

    pub fn send(&mut self, c: Client, v: Value) {
        self.shards[c.shard].on_text(c.key, &v.to_string(), self.now);
        self.settle();
    }

    /// Reads everything queued for a client, as a client reading as fast as it can does
    /// (the next page of a paged replay follows once the last is read).
    pub fn frames(&mut self, c: Client) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let io = self.shards[c.shard].io(c.key).unwrap();
            while let Some(f) = io.outbox.pop() {
                out.push(serde_json::from_slice(&f).unwrap());
            }
            if !io.drain_wanted {
                return out;
            }
            self.shards[c.shard].on_drained(c.key, self.now);
            self.settle();
        }
    }

    pub fn of_type(&mut self, c: Client, ty: &str) -> Vec<Value> {
        self.frames(c)
            .into_iter()
            .filter(|f| f["type"] == ty)
            .collect()
    }

    /// Moves both clocks on, one tick a second.
    pub fn advance_s(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.now.mono_ms += 1_000;
            self.now.unix_ms += 1_000;
            for s in &mut self.shards {
                s.tick(self.now);
            }
            self.settle();
        }
    }
}

/// Hands request `r` to `store` and its answers to `shard`: `fenced` (if any) first, as the
/// bridge sends it.
pub fn answer(store: &mut MemStore, shard: &mut Shard, r: BridgeMsg, now: Now) {
    let answer = store.answer(r);
    let convs = std::mem::take(&mut store.fenced_out);
    if !convs.is_empty() {
        shard.on_bridge(BridgeMsg::Fenced { convs }, now);
    }
    if let Some(a) = answer {
        shard.on_bridge(a, now);
    }
}

/// A web client's identity, as the upgrade gives it (`resumed`: it presented its token).
pub fn web_identity(who: ParticipantId, resumed: bool) -> Identity {
    Identity {
        who,
        client: ClientKind::Web,
        resumed,
        priority: 0,
        supervisor: false,
        teams: Vec::new(),
        site: None,
    }
}

pub fn visitor(id: u64) -> ParticipantId {
    ParticipantId::Visitor(VisitorId(id))
}

pub fn msg(cid: &str, body: &str) -> Value {
    json!({"type":"msg","cid":cid,"body":body})
}
