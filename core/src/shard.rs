//! One shard's complete state and behaviour, free of any runtime.
//!
//! Inputs: connections arriving and leaving, their text frames, activity, timer ticks, and
//! [`ShardMsg`]s from other shards. Outputs: frames queued on each connection's [`ConnIo`]
//! (whose waker the runtime sets) and [`ShardMsg`]s for other shards, taken with
//! [`Shard::take_outgoing`]. Messages a shard addresses to itself are handled at once, so a
//! same-shard hop costs a function call, not a channel.

use crate::assignment::{Dispatch, Dispatcher};
use crate::auth::Identity;
use crate::config::{ClientKind, CoreConfig};
use crate::conn::{ConnIo, ConnKey, Now};
use crate::conversation::{msg_frame, AckWaiter, Conversation, Posted};
use crate::idle::{verdict, IdleVerdict, IdleWheel};
use crate::messages::{ShardMsg, Signal};
use crate::persist::{Resolved, StoreLink, Wait};
use crate::ratelimit::TokenBucket;
use crate::routing::{home_shard, ShardId, DISPATCHER_SHARD};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use switchboard_protocol::bridge::{BridgeMsg, ConvEvent, StoredMessage};
use switchboard_protocol::client::{decode_client_frame, ClientFrame};
use switchboard_protocol::server::HistoryItem;
use switchboard_protocol::server::{encode, CloseReason, Role, ServerFrame, PROTOCOL_VERSION};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use switchboard_protocol::{AgentId, CloseCode, ConvId, ErrorCode, ParticipantId, VisitorId};

/// Rate-limited frames in a row after which a connection is closed with 1008.
const MAX_STRIKES: u16 = 50;
/// Open conversations the dispatcher lists from the store at start, at most.
const OPEN_LISTED: u32 = 1_000_000;
/// Closed conversations remembered (to answer late frames with `conversation_closed`).
const CLOSED_REMEMBERED: usize = 100_000;
/// Who the store records as having closed an idle conversation.
pub const IDLE_CLOSER: &str = "(idle)";

#[derive(Debug)]
struct Conn {
    who: ParticipantId,
    client: ClientKind,
    io: ConnIo,
    /// A visitor's current conversation.
    visitor_conv: Option<ConvId>,
    /// For a returning visitor: whether its open conversation has been looked up.
    lookup: Lookup,
    /// Conversations this connection is subscribed to (live or awaiting replay).
    subs: Vec<ConvId>,
    last_seen: u64,
    pinged: bool,
    rate: TokenBucket,
    strikes: u16,
}

/// A returning visitor's first frame about "my conversation" on a new connection asks the
/// dispatcher which one is open, and waits (with whatever follows) for the answer.
#[derive(Debug)]
enum Lookup {
    /// Nothing to look up: an agent, a new visitor, or already answered.
    Done,
    /// A returning visitor that has not needed its conversation yet.
    Due,
    /// Asked; these frames wait for the answer, in order.
    Asked(Vec<ClientFrame>),
}

/// Frames a connection may park while its lookup is answered.
const LOOKUP_PARKED_MAX: usize = 64;
/// How long the dispatcher holds lookups for the start-up listing before answering from
/// what it knows (the bridge may be down), and how many it holds.
const LOOKUP_WAIT_MS: u64 = 5_000;
const LOOKUPS_HELD_MAX: usize = 100_000;

/// A returning visitor's lookup held by the dispatcher until the start-up listing is in.
#[derive(Debug)]
struct HeldLookup {
    from: ShardId,
    visitor: VisitorId,
    conn: ConnKey,
    since_ms: u64,
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// Counters and gauges the runtime exports as metrics.
#[derive(Debug, Default, Clone)]
pub struct ShardStats {
    /// Open connections by role (visitor, agent) and client kind (web, mobile, api).
    pub connections: [[u64; 3]; 2],
    /// New messages sequenced by this shard (as a home shard).
    pub messages_posted: u64,
    /// Resends recognised by cid.
    pub duplicates: u64,
    /// Frames queued to local connections.
    pub frames_queued: u64,
    /// Error frames sent.
    pub errors_sent: u64,
    /// Frames refused by the rate limit.
    pub rate_limited: u64,
    /// Messages refused because storage was too far behind.
    pub overloaded: u64,
    /// Messages sent to storage and not yet confirmed.
    pub unconfirmed: u64,
    /// Conversations open on this shard (as a home shard).
    pub open_conversations: u64,
    /// Conversations waiting for an agent (dispatcher shard only).
    pub queue_len: u64,
    /// Agents online (dispatcher shard only).
    pub agents_online: u64,
    /// Conversations closed because nobody wrote in them for `conversation_idle_close`.
    pub idle_closed: u64,
}

fn role_index(who: &ParticipantId) -> usize {
    match who {
        ParticipantId::Visitor(_) => 0,
        ParticipantId::Agent(_) => 1,
    }
}

fn client_index(c: ClientKind) -> usize {
    match c {
        ClientKind::Web => 0,
        ClientKind::Mobile => 1,
        ClientKind::Api => 2,
    }
}

fn error_frame(code: ErrorCode, message: &str, cid: Option<&str>) -> Bytes {
    encode(&ServerFrame::Error {
        code: code.as_str().into(),
        message: message.into(),
        cid: cid.map(Into::into),
    })
}

/// One shard. See the module docs.
#[derive(Debug)]
pub struct Shard {
    id: ShardId,
    nr_shards: u32,
    cfg: CoreConfig,
    signer: TokenSigner,
    rng: fastrand::Rng,
    now: Now,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Local connections live-subscribed to each conversation.
    conv_subs: HashMap<ConvId, Vec<ConnKey>>,
    /// Local devices of each agent.
    agents: HashMap<AgentId, Vec<ConnKey>>,
    /// Conversations whose home is this shard.
    convs: HashMap<ConvId, Conversation>,
    closed_order: VecDeque<ConvId>,
    /// Present on the dispatcher shard only.
    dispatcher: Option<Dispatcher>,
    /// Dispatcher shard: lookups waiting for the start-up listing.
    held_lookups: Vec<HeldLookup>,
    last_queue_update: u64,
    idle: IdleWheel<ConnKey>,
    /// Idle-close checks of conversations: this shard's own, and on the dispatcher shard
    /// those listed at start-up.
    conv_idle: IdleWheel<ConvId>,
    outgoing: Vec<(ShardId, ShardMsg)>,
    local: VecDeque<ShardMsg>,
    stats: ShardStats,
    /// Durability through the storage bridge; `None` when running without one.
    store: Option<StoreLink>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        nr_shards: u32,
        cfg: CoreConfig,
        signer: TokenSigner,
        seed: u64,
    ) -> Self {
        assert!(id < nr_shards, "shard {id} of {nr_shards}");
        let dispatcher = (id == DISPATCHER_SHARD).then(|| Dispatcher::new(cfg.agent_capacity));
        let cfg_durable = cfg.durable;
        Self {
            id,
            nr_shards,
            cfg,
            signer,
            rng: fastrand::Rng::with_seed(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            now: Now::default(),
            slots: Vec::new(),
            free: Vec::new(),
            conv_subs: HashMap::new(),
            agents: HashMap::new(),
            convs: HashMap::new(),
            closed_order: VecDeque::new(),
            dispatcher,
            held_lookups: Vec::new(),
            last_queue_update: 0,
            idle: IdleWheel::default(),
            conv_idle: IdleWheel::default(),
            outgoing: Vec::new(),
            local: VecDeque::new(),
            stats: ShardStats::default(),
            store: cfg_durable.then(|| {
                let mut link = StoreLink::default();
                if id == DISPATCHER_SHARD {
                    // After a restart, the dispatcher learns the open conversations at once:
                    // agents get theirs back, waiting visitors get agents.
                    link.list_open(OPEN_LISTED);
                }
                link
            }),
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// A fresh random visitor id (for [`crate::auth::authenticate`]).
    pub fn new_visitor_id(&mut self) -> VisitorId {
        VisitorId(self.rng.u64(..))
    }

    /// Messages for other shards produced since the last call.
    pub fn take_outgoing(&mut self) -> Vec<(ShardId, ShardMsg)> {
        std::mem::take(&mut self.outgoing)
    }

    /// Requests for the storage bridge produced since the last call.
    pub fn take_bridge_requests(&mut self) -> Vec<BridgeMsg> {
        let Some(link) = self.store.as_mut() else {
            return Vec::new();
        };
        let out = link.take_requests();
        self.stats.unconfirmed = link.unconfirmed as u64;
        out
    }

    pub fn has_bridge_requests(&self) -> bool {
        self.store.as_ref().is_some_and(StoreLink::has_requests)
    }

    /// An answer from the storage bridge.
    pub fn on_bridge(&mut self, msg: BridgeMsg, now: Now) {
        self.now = now;
        let Some(link) = self.store.as_mut() else {
            return;
        };
        let resolved = link.resolve(&msg);
        self.stats.unconfirmed = link.unconfirmed as u64;
        match resolved {
            Resolved::Nothing => {}
            Resolved::Persist(outcomes) => {
                for o in outcomes {
                    for (conv, seq) in o.heads {
                        self.settle_acks(conv, seq, o.ok);
                    }
                }
            }
            Resolved::Loaded(conv, parked) => {
                if let BridgeMsg::ConvLoaded {
                    info: Some(info), ..
                } = &msg
                {
                    let mut c =
                        Conversation::restore(conv, info, self.cfg.window, self.cfg.dedupe_window);
                    // Idle since its newest stored message (or since now, if it has none).
                    c.touch(match Conversation::last_written_unix_ms(info) {
                        Some(ts) => self
                            .now
                            .mono_ms
                            .saturating_sub(self.now.unix_ms.saturating_sub(ts)),
                        None => self.now.mono_ms,
                    });
                    if !c.is_closed() {
                        self.stats.open_conversations += 1;
                        let restore = ShardMsg::Restore {
                            conv,
                            visitor: c.visitor(),
                            agent: c.agent().cloned(),
                        };
                        self.send(DISPATCHER_SHARD, restore);
                    }
                    self.convs.insert(conv, c);
                    self.watch_idle(conv);
                }
                for (from, m) in parked {
                    self.handle(from, m);
                }
            }
            Resolved::LoadFailed(_, parked) => {
                for (from, m) in parked {
                    self.refuse(
                        from,
                        m,
                        ErrorCode::Overloaded,
                        "storage unavailable; try again",
                    );
                }
            }
            Resolved::Read(wait, stored) => self.finish_read(wait, stored),
            Resolved::OpenConvs(listed) => {
                for o in listed.unwrap_or_default() {
                    // Its home shard loads it when someone touches it; if nobody does, it
                    // is checked (and loaded) after one idle period.
                    if let Some(idle) = self.cfg.conversation_idle_close {
                        let due = self.now.mono_ms + idle.as_millis() as u64;
                        self.conv_idle.schedule(o.conv, due);
                    }
                    let agent = o.agent.as_deref().and_then(AgentId::new);
                    self.handle(
                        self.id,
                        ShardMsg::Restore {
                            conv: o.conv,
                            visitor: o.visitor,
                            agent,
                        },
                    );
                }
                self.answer_held_lookups(u64::MAX);
            }
        }
        self.pump();
    }

    /// Whether there are messages for other shards waiting.
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// The runtime's view of a connection; `None` once it is gone.
    pub fn io(&mut self, key: ConnKey) -> Option<&mut ConnIo> {
        self.conn_mut(key).map(|c| &mut c.io)
    }

    pub fn connection_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn conn_mut(&mut self, key: ConnKey) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(key.idx as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.conn.as_mut()
    }

    fn send(&mut self, to: ShardId, msg: ShardMsg) {
        route(self.id, &mut self.local, &mut self.outgoing, to, msg);
    }

    fn home(&self, conv: ConvId) -> ShardId {
        home_shard(conv, self.nr_shards)
    }

    /// Queues a frame for a local connection; closes it as a slow consumer on overflow.
    fn push(&mut self, key: ConnKey, frame: Bytes) {
        let limit = self.cfg.max_outbox_bytes;
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        if conn.io.close.is_some() {
            return;
        }
        if conn.io.outbox.push(frame, limit).is_err() {
            conn.io.close = Some(CloseCode::SlowConsumer);
        }
        conn.io.wake();
        self.stats.frames_queued += 1;
    }

    fn push_error(&mut self, key: ConnKey, code: ErrorCode, message: &str, cid: Option<&str>) {
        self.stats.errors_sent += 1;
        self.push(key, error_frame(code, message, cid));
    }

    /// Handles messages this shard sent to itself.
    fn pump(&mut self) {
        while let Some(msg) = self.local.pop_front() {
            self.handle(self.id, msg);
        }
    }

    // ------------------------------------------------------------------ connections

    /// Registers an authenticated connection and queues its `welcome` frame.
    pub fn connect(&mut self, identity: Identity, now: Now) -> ConnKey {
        self.now = now;
        let Identity {
            who,
            client,
            resumed,
        } = identity;
        let lookup = match who {
            ParticipantId::Visitor(_) if resumed => Lookup::Due,
            _ => Lookup::Done,
        };
        let conn = Conn {
            who: who.clone(),
            client,
            io: ConnIo::default(),
            visitor_conv: None,
            lookup,
            subs: Vec::new(),
            last_seen: now.mono_ms,
            pinged: false,
            rate: TokenBucket::new(self.cfg.rate_burst, now.mono_ms),
            strikes: 0,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].conn = Some(conn);
                i
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    conn: Some(conn),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let key = ConnKey::new(idx, self.slots[idx as usize].gen);
        self.stats.connections[role_index(&who)][client_index(client)] += 1;

        let deadline = self.cfg.idle_deadline(client);
        self.idle
            .schedule(key, now.mono_ms + deadline.as_millis() as u64 / 2);
        let (role, token) = match &who {
            ParticipantId::Visitor(v) => {
                let expires = now.unix_ms / 1000 + self.cfg.visitor_token_ttl_s;
                (
                    Role::Visitor,
                    Some(
                        self.signer
                            .mint(TokenKind::Visitor, &v.to_string(), expires),
                    ),
                )
            }
            ParticipantId::Agent(_) => (Role::Agent, None),
        };
        let welcome = encode(&ServerFrame::Welcome {
            id: who.to_string().into(),
            role,
            token: token.map(Into::into),
            client: client.as_str().into(),
            server: "switchboard".into(),
            protocol: PROTOCOL_VERSION,
            shard: self.id,
            idle_timeout_s: deadline.as_secs() as u32,
        });
        self.push(key, welcome);
        if let ParticipantId::Agent(agent) = who {
            self.agents.entry(agent.clone()).or_default().push(key);
            self.send(DISPATCHER_SHARD, ShardMsg::AgentOnline { agent, conn: key });
        }
        self.pump();
        key
    }

    /// Forgets a connection that has closed, and tells the shards that knew of it.
    pub fn disconnect(&mut self, key: ConnKey) {
        let Some(slot) = self.slots.get_mut(key.idx as usize) else {
            return;
        };
        if slot.gen != key.gen {
            return;
        }
        let Some(conn) = slot.conn.take() else { return };
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(key.idx);
        self.stats.connections[role_index(&conn.who)][client_index(conn.client)] -= 1;
        for conv in conn.subs {
            if let Some(list) = self.conv_subs.get_mut(&conv) {
                list.retain(|k| *k != key);
                if list.is_empty() {
                    self.conv_subs.remove(&conv);
                }
            }
            self.send(self.home(conv), ShardMsg::Unsubscribe { conv, conn: key });
        }
        if let ParticipantId::Agent(agent) = conn.who {
            if let Some(list) = self.agents.get_mut(&agent) {
                list.retain(|k| *k != key);
                if list.is_empty() {
                    self.agents.remove(&agent);
                }
            }
            self.send(DISPATCHER_SHARD, ShardMsg::AgentOffline { agent });
        }
        self.pump();
    }

    /// Any sign of life (a frame of any kind, a pong): one store, no timer.
    pub fn touch(&mut self, key: ConnKey, now: Now) {
        if let Some(conn) = self.conn_mut(key) {
            conn.last_seen = now.mono_ms;
            conn.pinged = false;
        }
    }

    /// A binary message: refused with an error frame.
    pub fn on_binary(&mut self, key: ConnKey, now: Now) {
        self.touch(key, now);
        self.push_error(
            key,
            ErrorCode::BinaryUnsupported,
            "binary messages are not supported; send JSON text",
            None,
        );
    }

    /// A text message from a client.
    pub fn on_text(&mut self, key: ConnKey, text: &str, now: Now) {
        self.now = now;
        let (rate, burst) = (self.cfg.rate_per_sec, self.cfg.rate_burst);
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        conn.last_seen = now.mono_ms;
        conn.pinged = false;
        if !conn.rate.try_take(now.mono_ms, rate, burst) {
            conn.strikes += 1;
            if conn.strikes >= MAX_STRIKES {
                conn.io.close = Some(CloseCode::PolicyViolation);
                conn.io.wake();
                self.stats.rate_limited += 1;
                return;
            }
            self.stats.rate_limited += 1;
            let cid = decode_client_frame(text).ok().and_then(|f| match f {
                ClientFrame::Msg { cid, .. } => Some(cid),
                _ => None,
            });
            self.push_error(
                key,
                ErrorCode::RateLimited,
                "too many frames; slow down and resend",
                cid.as_deref(),
            );
            return;
        }
        conn.strikes = 0;
        match decode_client_frame(text) {
            Ok(frame) => self.on_frame(key, frame),
            Err(e) => self.push_error(key, e.code, &e.message, e.cid.as_deref()),
        }
        self.pump();
    }

    fn on_frame(&mut self, key: ConnKey, frame: ClientFrame) {
        let ts = self.now.unix_ms;
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let frame = match conn.lookup {
            Lookup::Done => frame,
            _ => match self.lookup_first(key, frame) {
                Some(frame) => frame,
                None => return,
            },
        };
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let who = conn.who.clone();
        let is_agent = matches!(who, ParticipantId::Agent(_));
        // The conversation a frame is about: named, or (visitors only) the current one.
        let target = |named: Option<ConvId>, conn: &Conn| {
            named.or(if is_agent { None } else { conn.visitor_conv })
        };
        match frame {
            ClientFrame::Msg { cid, body, conv } => match target(conv, conn) {
                Some(conv) => self.send(
                    self.home(conv),
                    ShardMsg::Post {
                        conv,
                        conn: key,
                        who,
                        cid,
                        body,
                        ts,
                    },
                ),
                None if is_agent => self.push_error(
                    key,
                    ErrorCode::MissingField,
                    "agents must name `conv`",
                    Some(&cid),
                ),
                None => {
                    let ParticipantId::Visitor(visitor) = who else {
                        unreachable!("checked above")
                    };
                    // The new conversation's home is this shard: the visitor's own messages
                    // then never cross shards (ids stay random; about nr_shards draws).
                    let conv = loop {
                        let c = ConvId(self.rng.u64(..));
                        if home_shard(c, self.nr_shards) == self.id {
                            break c;
                        }
                    };
                    let conn = self.conn_mut(key).expect("present above");
                    conn.visitor_conv = Some(conv);
                    conn.subs.push(conv);
                    self.conv_subs.entry(conv).or_default().push(key);
                    self.send(
                        self.home(conv),
                        ShardMsg::Open {
                            conv,
                            visitor,
                            conn: key,
                            cid,
                            body,
                            ts,
                        },
                    );
                }
            },
            ClientFrame::Typing { conv } | ClientFrame::Read { conv, .. }
                if target(conv, conn).is_none() =>
            {
                let (code, what) = if is_agent {
                    (ErrorCode::MissingField, "agents must name `conv`")
                } else {
                    (
                        ErrorCode::NoConversation,
                        "no conversation yet: send a message first",
                    )
                };
                self.push_error(key, code, what, None);
            }
            ClientFrame::Typing { conv } | ClientFrame::Read { conv, .. } => {
                let signal = match frame {
                    ClientFrame::Read { seq, .. } => Signal::Read(seq),
                    _ => Signal::Typing,
                };
                let conv = target(conv, conn).expect("checked above");
                let msg = ShardMsg::Signal {
                    conv,
                    conn: key,
                    who,
                    signal,
                };
                self.send(self.home(conv), msg);
            }
            ClientFrame::Resume { conv, last_seq } => {
                if !conn.subs.contains(&conv) {
                    conn.subs.push(conv);
                }
                if !is_agent {
                    conn.visitor_conv = Some(conv);
                }
                // Until the replay arrives the connection is not live: anything delivered
                // meanwhile is part of the replay, so nothing arrives twice.
                if let Some(list) = self.conv_subs.get_mut(&conv) {
                    list.retain(|k| *k != key);
                }
                self.send(
                    self.home(conv),
                    ShardMsg::Subscribe {
                        conv,
                        conn: key,
                        who,
                        last_seq,
                    },
                );
            }
            ClientFrame::History {
                conv,
                before,
                limit,
            } => match target(conv, conn) {
                Some(conv) => {
                    let limit = limit.unwrap_or(50).min(u32::MAX as u64) as u32;
                    let msg = ShardMsg::History {
                        conv,
                        conn: key,
                        who,
                        before: before.unwrap_or(u64::MAX),
                        limit,
                    };
                    self.send(self.home(conv), msg);
                }
                None if is_agent => self.push_error(
                    key,
                    ErrorCode::MissingField,
                    "agents must name `conv`",
                    None,
                ),
                None => {
                    self.push_error(key, ErrorCode::NoConversation, "no conversation yet", None)
                }
            },
            ClientFrame::Close { conv } => {
                self.send(
                    self.home(conv),
                    ShardMsg::Close {
                        conv,
                        conn: key,
                        who,
                    },
                );
            }
        }
    }

    // ------------------------------------------------------------------ time

    /// Periodic work (about once a second): idle deadlines and queue position updates.
    pub fn tick(&mut self, now: Now) {
        self.now = now;
        for key in self.idle.take_due(now.mono_ms) {
            let cfg_deadline =
                |c: ClientKind, cfg: &CoreConfig| cfg.idle_deadline(c).as_millis() as u64;
            let deadline = match self.conn_mut(key) {
                Some(c) => cfg_deadline(c.client, &self.cfg),
                None => continue,
            };
            let conn = self.conn_mut(key).expect("checked above");
            match verdict(now.mono_ms, conn.last_seen, deadline, conn.pinged) {
                IdleVerdict::Recheck(at) => self.idle.schedule(key, at),
                IdleVerdict::Ping(at) => {
                    conn.pinged = true;
                    conn.io.ping_due = true;
                    conn.io.wake();
                    self.idle.schedule(key, at);
                }
                IdleVerdict::Expire => {
                    if conn.io.close.is_none() {
                        conn.io.close = Some(CloseCode::IdleTimeout);
                    }
                    conn.io.wake();
                }
            }
        }
        if !self.held_lookups.is_empty() {
            self.answer_held_lookups(now.mono_ms.saturating_sub(LOOKUP_WAIT_MS));
        }
        for conv in self.conv_idle.take_due(now.mono_ms) {
            let home = home_shard(conv, self.nr_shards);
            if home != self.id {
                self.send(home, ShardMsg::IdleCheck { conv });
                continue;
            }
            if let Some(c) = self.convs.get_mut(&conv) {
                c.idle_check_taken();
            }
            self.handle(self.id, ShardMsg::IdleCheck { conv });
        }
        let interval = self.cfg.queue_update_interval.as_millis() as u64;
        if self.dispatcher.is_some() && now.mono_ms >= self.last_queue_update + interval {
            self.last_queue_update = now.mono_ms;
            let updates = self
                .dispatcher
                .as_mut()
                .expect("checked")
                .position_updates();
            self.dispatch(updates);
        }
        self.pump();
    }

    /// A returning visitor's frame while its open conversation may still be unknown: parks
    /// it while a lookup is out, or starts one for a frame about "my conversation" (no
    /// `conv`, none current). Gives the frame back when it is to be handled now.
    fn lookup_first(&mut self, key: ConnKey, frame: ClientFrame) -> Option<ClientFrame> {
        let conn = self.conn_mut(key)?;
        let about_current = match &frame {
            ClientFrame::Msg { conv, .. }
            | ClientFrame::Typing { conv }
            | ClientFrame::Read { conv, .. }
            | ClientFrame::History { conv, .. } => conv.is_none(),
            ClientFrame::Resume { .. } | ClientFrame::Close { .. } => false,
        };
        match &mut conn.lookup {
            Lookup::Asked(parked) if parked.len() < LOOKUP_PARKED_MAX => parked.push(frame),
            Lookup::Asked(_) => self.push_error(
                key,
                ErrorCode::RateLimited,
                "too many frames while finding your conversation; resend",
                None,
            ),
            // It named its conversation itself (`resume`): nothing to find.
            _ if conn.visitor_conv.is_some() => {
                conn.lookup = Lookup::Done;
                return Some(frame);
            }
            _ if !about_current => return Some(frame),
            _ => {
                let ParticipantId::Visitor(visitor) = conn.who else {
                    unreachable!("only visitors look up")
                };
                conn.lookup = Lookup::Asked(vec![frame]);
                self.send(
                    DISPATCHER_SHARD,
                    ShardMsg::FindOpenConv { visitor, conn: key },
                );
            }
        }
        None
    }

    /// Answers the held lookups asked at or before `asked_by_ms` from what the dispatcher
    /// knows now.
    fn answer_held_lookups(&mut self, asked_by_ms: u64) {
        let (due, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held_lookups)
            .into_iter()
            .partition(|h| h.since_ms <= asked_by_ms);
        self.held_lookups = held;
        for h in due {
            let conv = self.dispatcher_mut().open_conv_of(h.visitor);
            self.send(h.from, ShardMsg::OpenConvIs { conn: h.conn, conv });
        }
    }

    /// Files an idle-close check of `conv` (in memory, open) at its deadline, unless one is
    /// filed already.
    fn watch_idle(&mut self, conv: ConvId) {
        let Some(idle) = self.cfg.conversation_idle_close else {
            return;
        };
        let Some(c) = self.convs.get_mut(&conv).filter(|c| !c.is_closed()) else {
            return;
        };
        if c.watch_idle() {
            self.conv_idle
                .schedule(conv, c.idle_deadline_ms(idle.as_millis() as u64));
        }
    }

    /// Closes `conv`: by its agent, or (`None`) because it was idle. Tells every
    /// participant, the store and the dispatcher.
    fn close_conversation(&mut self, conv: ConvId, by: Option<AgentId>) {
        let frame = encode(&ServerFrame::Closed {
            conv,
            by: by.as_ref().map(|a| a.to_string().into()),
            reason: match by {
                Some(_) => CloseReason::Agent,
                None => CloseReason::Idle,
            },
        });
        self.fanout(conv, frame, None, true);
        let Some(c) = self.convs.get_mut(&conv) else {
            return;
        };
        let agent = c.agent().cloned();
        c.close();
        self.stats.open_conversations -= 1;
        self.closed_order.push_back(conv);
        if self.closed_order.len() > CLOSED_REMEMBERED {
            if let Some(old) = self.closed_order.pop_front() {
                self.convs.remove(&old);
            }
        }
        if let Some(link) = self.store.as_mut() {
            link.event(ConvEvent::Closed {
                conv,
                // Not a possible agent id: agents' ids have no parentheses.
                by: by.map_or_else(|| IDLE_CLOSER.to_string(), |a| a.to_string()),
                ts: self.now.unix_ms,
            });
        }
        self.send(DISPATCHER_SHARD, ShardMsg::ConvClosed { conv, agent });
    }

    /// Asks every connection to close with 1001 (graceful shutdown).
    pub fn begin_shutdown(&mut self) {
        for slot in &mut self.slots {
            if let Some(conn) = &mut slot.conn {
                if conn.io.close.is_none() {
                    conn.io.close = Some(CloseCode::GoingAway);
                }
                conn.io.wake();
            }
        }
    }

    // ------------------------------------------------------------------ shard messages

    /// A message from shard `from` (possibly this one).
    pub fn on_shard_msg(&mut self, from: ShardId, msg: ShardMsg, now: Now) {
        self.now = now;
        self.handle(from, msg);
        self.pump();
    }

    fn handle(&mut self, from: ShardId, msg: ShardMsg) {
        // After a restart, a conversation may exist only in the store: load it first.
        if let (Some(link), Some(conv)) = (self.store.as_mut(), msg.home_conv()) {
            if !self.convs.contains_key(&conv) && !link.is_missing(conv) {
                link.park(
                    conv,
                    from,
                    msg,
                    self.cfg.window.max(self.cfg.dedupe_window) as u32,
                );
                return;
            }
        }
        match msg {
            ShardMsg::Open {
                conv,
                visitor,
                conn,
                cid,
                body,
                ts,
            } => {
                let c = self.convs.entry(conv).or_insert_with(|| {
                    Conversation::new(conv, visitor, self.cfg.window, self.cfg.dedupe_window)
                });
                c.subscribe(from, conn);
                c.touch(self.now.mono_ms);
                self.stats.open_conversations += 1;
                if let Some(link) = self.store.as_mut() {
                    link.created(conv);
                    link.event(ConvEvent::Opened { conv, visitor, ts });
                }
                self.post(
                    from,
                    conn,
                    conv,
                    ParticipantId::Visitor(visitor),
                    &cid,
                    &body,
                    ts,
                );
                self.send(DISPATCHER_SHARD, ShardMsg::Enqueue { conv, visitor });
                self.watch_idle(conv);
            }
            ShardMsg::Post {
                conv,
                conn,
                who,
                cid,
                body,
                ts,
            } => {
                if self.check_participant(from, conn, conv, &who, Some(&cid)) {
                    self.post(from, conn, conv, who, &cid, &body, ts);
                }
            }
            ShardMsg::Signal {
                conv,
                conn,
                who,
                signal,
            } => {
                if self.check_participant(from, conn, conv, &who, None) {
                    let from_label = who.to_string();
                    let frame = match signal {
                        Signal::Typing => ServerFrame::Typing {
                            conv,
                            from: from_label.into(),
                        },
                        Signal::Read(seq) => ServerFrame::Read {
                            conv,
                            from: from_label.into(),
                            seq,
                        },
                    };
                    self.fanout(conv, encode(&frame), Some((from, conn)), false);
                }
            }
            ShardMsg::Subscribe {
                conv,
                conn,
                who,
                last_seq,
            } => {
                if let Some((code, message)) = self.refusal(conv, &who) {
                    self.stats.errors_sent += 1;
                    let frames = vec![error_frame(code, message, None)];
                    self.send(
                        from,
                        ShardMsg::Replay {
                            conv,
                            conn,
                            frames,
                            ok: false,
                        },
                    );
                    return;
                }
                let c = self.convs.get_mut(&conv).expect("checked above");
                c.subscribe(from, conn);
                let oldest = c.oldest_kept().unwrap_or(c.head_seq() + 1);
                if let Some(link) = self
                    .store
                    .as_mut()
                    .filter(|_| last_seq.saturating_add(1) < oldest && last_seq < c.head_seq())
                {
                    // Older than the window: fetch the gap from the store first. The
                    // connection stays pending on its shard until the replay arrives.
                    let wait = Wait::Resume {
                        from,
                        conn,
                        conv,
                        last_seq,
                    };
                    link.read(wait, conv, last_seq, oldest, self.cfg.resume_fetch_max);
                    return;
                }
                let (frames, complete) = c.replay_after(last_seq);
                let head = c.head_seq();
                self.send_replay(from, conn, conv, frames, head, complete);
            }
            ShardMsg::Unsubscribe { conv, conn } => {
                if let Some(c) = self.convs.get_mut(&conv) {
                    c.unsubscribe(from, conn);
                }
            }
            ShardMsg::Close { conv, conn, who } => {
                if matches!(who, ParticipantId::Visitor(_)) {
                    self.stats.errors_sent += 1;
                    let frame = error_frame(
                        ErrorCode::Forbidden,
                        "only agents close conversations",
                        None,
                    );
                    self.send(from, ShardMsg::ToConn { conn, frame });
                    return;
                }
                if !self.check_participant(from, conn, conv, &who, None) {
                    return;
                }
                if let ParticipantId::Agent(agent) = who {
                    self.close_conversation(conv, Some(agent));
                }
            }
            ShardMsg::IdleCheck { conv } => {
                let Some(idle) = self.cfg.conversation_idle_close else {
                    return;
                };
                let Some(c) = self.convs.get(&conv).filter(|c| !c.is_closed()) else {
                    return;
                };
                if self.now.mono_ms >= c.idle_deadline_ms(idle.as_millis() as u64) {
                    self.stats.idle_closed += 1;
                    self.close_conversation(conv, None);
                } else {
                    self.watch_idle(conv);
                }
            }
            ShardMsg::Assign {
                conv,
                agent,
                agent_shards,
            } => {
                let Some(c) = self.convs.get_mut(&conv).filter(|c| !c.is_closed()) else {
                    return;
                };
                c.assign(agent.clone());
                let visitor = c.visitor();
                if let Some(link) = self.store.as_mut() {
                    let ts = self.now.unix_ms;
                    link.event(ConvEvent::Assigned {
                        conv,
                        agent: agent.to_string(),
                        ts,
                    });
                }
                let frame = encode(&ServerFrame::AgentJoined {
                    conv,
                    agent: agent.as_str().into(),
                });
                self.fanout(conv, frame, None, false);
                for shard in agent_shards {
                    self.send(
                        shard,
                        ShardMsg::AgentAssigned {
                            conv,
                            visitor,
                            agent: agent.clone(),
                        },
                    );
                }
            }
            ShardMsg::History {
                conv,
                conn,
                who,
                before,
                limit,
            } => {
                let refusal = match self.convs.get(&conv) {
                    Some(c) if c.is_participant(&who) => None,
                    _ => Some("not a participant"),
                };
                if let Some(message) = refusal {
                    self.stats.errors_sent += 1;
                    let frame = error_frame(ErrorCode::NotInConversation, message, None);
                    self.send(from, ShardMsg::ToConn { conn, frame });
                    return;
                }
                let limit = limit.clamp(1, self.cfg.history_max);
                let c = &self.convs[&conv];
                let in_window = c.window_after(0).filter(|(s, _)| *s < before).count();
                // A closed conversation's window is freed: its history is in the store.
                let covered = in_window >= limit as usize
                    || c.oldest_kept().is_some_and(|o| o <= 1)
                    || c.head_seq() == 0;
                match self.store.as_mut() {
                    Some(link) if !covered => {
                        let upto = before.min(c.oldest_kept().unwrap_or(before));
                        link.read(
                            Wait::History {
                                from,
                                conn,
                                conv,
                                before,
                                limit,
                            },
                            conv,
                            0,
                            upto,
                            limit,
                        );
                    }
                    _ => self.finish_read(
                        Wait::History {
                            from,
                            conn,
                            conv,
                            before,
                            limit,
                        },
                        Some(Vec::new()),
                    ),
                }
            }
            ShardMsg::Restore {
                conv,
                visitor,
                agent,
            } => {
                let out = match agent {
                    None => self.dispatcher_mut().enqueue(conv, visitor),
                    Some(agent) => self.dispatcher_mut().restore(conv, visitor, agent),
                };
                self.dispatch(out);
            }
            ShardMsg::QueuePosition { conv, position } => {
                if self
                    .convs
                    .get(&conv)
                    .is_some_and(|c| c.agent().is_none() && !c.is_closed())
                {
                    self.fanout(
                        conv,
                        encode(&ServerFrame::Queued { conv, position }),
                        None,
                        false,
                    );
                }
            }

            ShardMsg::Enqueue { conv, visitor } => {
                let out = self.dispatcher_mut().enqueue(conv, visitor);
                self.dispatch(out);
            }
            ShardMsg::AgentOnline { agent, conn } => {
                let (open, out) = self.dispatcher_mut().agent_online(&agent, from);
                self.send(from, ShardMsg::AgentConvs { conn, convs: open });
                self.dispatch(out);
            }
            ShardMsg::AgentOffline { agent } => {
                self.dispatcher_mut().agent_offline(&agent, from);
                self.refresh_dispatch_stats();
            }
            ShardMsg::ConvClosed { conv, agent } => {
                let out = self.dispatcher_mut().closed(conv, agent.as_ref());
                self.dispatch(out);
            }
            ShardMsg::FindOpenConv { visitor, conn } => {
                let listing = self.store.as_ref().is_some_and(StoreLink::is_listing);
                if listing && self.held_lookups.len() < LOOKUPS_HELD_MAX {
                    // Just started: the visitor's conversation may be among those listed.
                    self.held_lookups.push(HeldLookup {
                        from,
                        visitor,
                        conn,
                        since_ms: self.now.mono_ms,
                    });
                    return;
                }
                let conv = self.dispatcher_mut().open_conv_of(visitor);
                self.send(from, ShardMsg::OpenConvIs { conn, conv });
            }
            ShardMsg::OpenConvIs { conn, conv } => {
                let Some(c) = self.conn_mut(conn) else { return };
                let parked = match std::mem::replace(&mut c.lookup, Lookup::Done) {
                    Lookup::Asked(parked) => parked,
                    _ => Vec::new(),
                };
                if let (Some(conv), None) = (conv, c.visitor_conv) {
                    // Back in it, live from its newest message: `resumed` says which and
                    // up to where (`history` reads back).
                    self.on_frame(
                        conn,
                        ClientFrame::Resume {
                            conv,
                            last_seq: u64::MAX,
                        },
                    );
                }
                for frame in parked {
                    self.on_frame(conn, frame);
                }
            }

            ShardMsg::ToConn { conn, frame } => self.push(conn, frame),
            ShardMsg::Deliver {
                conv,
                frame,
                exclude,
                closes,
            } => self.deliver(from, conv, frame, exclude, closes),
            ShardMsg::Replay {
                conv,
                conn,
                frames,
                ok,
            } => {
                let Some(c) = self.conn_mut(conn) else { return };
                if ok {
                    let list = self.conv_subs.entry(conv).or_default();
                    if !list.contains(&conn) {
                        list.push(conn);
                    }
                } else {
                    c.subs.retain(|x| *x != conv);
                    if c.visitor_conv == Some(conv) {
                        c.visitor_conv = None;
                    }
                }
                for f in frames {
                    self.push(conn, f);
                }
            }
            ShardMsg::AgentAssigned {
                conv,
                visitor,
                agent,
            } => {
                // Devices are told; each attaches with `resume`, so that a device that
                // connected at any moment gets every message once (see docs/protocol.md).
                let devices = self.agents.get(&agent).cloned().unwrap_or_default();
                let frame = encode(&ServerFrame::Assigned { conv, visitor });
                for key in devices {
                    self.push(key, frame.clone());
                }
            }
            ShardMsg::AgentConvs { conn, convs } => {
                for (conv, visitor) in convs {
                    self.push(conn, encode(&ServerFrame::Assigned { conv, visitor }));
                }
            }
        }
    }

    /// Sends a resumed connection its replayed frames, closed by `resumed`.
    fn send_replay(
        &mut self,
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        mut frames: Vec<Bytes>,
        head: u64,
        complete: bool,
    ) {
        let replayed = frames.len() as u32;
        frames.push(encode(&ServerFrame::Resumed {
            conv,
            last_seq: head,
            replayed,
            complete,
        }));
        self.send(
            from,
            ShardMsg::Replay {
                conv,
                conn,
                frames,
                ok: true,
            },
        );
    }

    /// Acks of `conv` up to `seq`: sent when the store committed them, errors otherwise.
    fn settle_acks(&mut self, conv: ConvId, seq: u64, ok: bool) {
        let Some(c) = self.convs.get_mut(&conv) else {
            return;
        };
        let ready = if ok {
            c.confirm(seq)
        } else {
            c.fail_acks_up_to(seq)
        };
        for w in ready {
            let frame = if ok {
                encode(&ServerFrame::Ack {
                    cid: w.cid.as_ref().into(),
                    conv,
                    seq: w.seq,
                })
            } else {
                self.stats.errors_sent += 1;
                error_frame(
                    ErrorCode::Overloaded,
                    "not stored; resend with the same cid",
                    Some(&w.cid),
                )
            };
            self.send(
                w.shard,
                ShardMsg::ToConn {
                    conn: w.conn,
                    frame,
                },
            );
        }
    }

    /// Answers a parked request that cannot be served.
    fn refuse(&mut self, from: ShardId, msg: ShardMsg, code: ErrorCode, message: &str) {
        let (conn, cid) = match &msg {
            ShardMsg::Post { conn, cid, .. } => (*conn, Some(cid.as_str())),
            ShardMsg::Signal { conn, .. }
            | ShardMsg::Close { conn, .. }
            | ShardMsg::History { conn, .. } => (*conn, None),
            ShardMsg::Subscribe { conv, conn, .. } => {
                self.stats.errors_sent += 1;
                let frames = vec![error_frame(code, message, None)];
                self.send(
                    from,
                    ShardMsg::Replay {
                        conv: *conv,
                        conn: *conn,
                        frames,
                        ok: false,
                    },
                );
                return;
            }
            _ => return,
        };
        self.stats.errors_sent += 1;
        let frame = error_frame(code, message, cid);
        self.send(from, ShardMsg::ToConn { conn, frame });
    }

    /// Completes a store read: a resume reaching past the window, or a `history` request.
    fn finish_read(&mut self, wait: Wait, stored: Option<Vec<StoredMessage>>) {
        match wait {
            Wait::Resume {
                from,
                conn,
                conv,
                last_seq,
            } => {
                let Some(c) = self.convs.get(&conv) else {
                    return;
                };
                let mut complete = stored.is_some();
                let mut frames = Vec::new();
                let mut next = last_seq + 1;
                for m in stored.unwrap_or_default() {
                    complete &= m.seq == next;
                    frames.push(msg_frame(conv, m.seq, &m.sender, &m.cid, &m.body, m.ts));
                    next = m.seq + 1;
                }
                for (seq, f) in c.window_after(next - 1) {
                    complete &= seq == next;
                    frames.push(f.clone());
                    next = seq + 1;
                }
                let head = c.head_seq();
                self.send_replay(from, conn, conv, frames, head, complete);
            }
            Wait::History {
                from,
                conn,
                conv,
                before,
                limit,
            } => {
                let Some(stored) = stored else {
                    self.refuse(
                        from,
                        ShardMsg::History {
                            conv,
                            conn,
                            who: ParticipantId::Visitor(VisitorId(0)),
                            before,
                            limit,
                        },
                        ErrorCode::Overloaded,
                        "storage unavailable; try again",
                    );
                    return;
                };
                let Some(c) = self.convs.get(&conv) else {
                    return;
                };
                let newest_stored = stored.last().map_or(0, |m| m.seq);
                let mut items: Vec<HistoryItem<'static>> = stored
                    .into_iter()
                    .map(|m| HistoryItem {
                        seq: m.seq,
                        from: m.sender.into(),
                        cid: m.cid.into(),
                        body: m.body.into(),
                        ts: m.ts,
                    })
                    .collect();
                for (seq, f) in c.window_after(newest_stored).filter(|(s, _)| *s < before) {
                    if let Ok(ServerFrame::Msg {
                        from,
                        cid,
                        body,
                        ts,
                        ..
                    }) = serde_json::from_slice::<ServerFrame<'static>>(f)
                    {
                        items.push(HistoryItem {
                            seq,
                            from,
                            cid,
                            body,
                            ts,
                        });
                    }
                }
                let skip = items.len().saturating_sub(limit as usize);
                let items: Vec<HistoryItem<'static>> = items.into_iter().skip(skip).collect();
                let complete = items.first().is_none_or(|m| m.seq <= 1);
                let frame = encode(&ServerFrame::History {
                    conv,
                    messages: items,
                    complete,
                });
                self.send(from, ShardMsg::ToConn { conn, frame });
            }
        }
    }

    fn dispatcher_mut(&mut self) -> &mut Dispatcher {
        self.dispatcher
            .as_mut()
            .expect("dispatcher messages go to the dispatcher shard")
    }

    fn refresh_dispatch_stats(&mut self) {
        if let Some(d) = &self.dispatcher {
            self.stats.queue_len = d.queue_len() as u64;
            self.stats.agents_online = d.online_agents() as u64;
        }
    }

    fn dispatch(&mut self, out: Vec<Dispatch>) {
        for d in out {
            match d {
                Dispatch::Assign {
                    conv,
                    agent,
                    agent_shards,
                    ..
                } => self.send(
                    self.home(conv),
                    ShardMsg::Assign {
                        conv,
                        agent,
                        agent_shards,
                    },
                ),
                Dispatch::Position { conv, position } => {
                    self.send(self.home(conv), ShardMsg::QueuePosition { conv, position })
                }
            }
        }
        self.refresh_dispatch_stats();
    }

    /// On the home shard: is `who` allowed to act in `conv`? Answers the sender if not.
    /// Why `who` may not act in `conv` (on its home shard), if it may not.
    fn refusal(&self, conv: ConvId, who: &ParticipantId) -> Option<(ErrorCode, &'static str)> {
        match self.convs.get(&conv) {
            None => Some((ErrorCode::NotInConversation, "no such conversation")),
            Some(c) if !c.is_participant(who) => {
                Some((ErrorCode::NotInConversation, "not a participant"))
            }
            Some(c) if c.is_closed() => {
                Some((ErrorCode::ConversationClosed, "conversation is closed"))
            }
            Some(_) => None,
        }
    }

    fn check_participant(
        &mut self,
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        who: &ParticipantId,
        cid: Option<&str>,
    ) -> bool {
        match self.refusal(conv, who) {
            None => true,
            Some((code, message)) => {
                self.stats.errors_sent += 1;
                self.send(
                    from,
                    ShardMsg::ToConn {
                        conn,
                        frame: error_frame(code, message, cid),
                    },
                );
                false
            }
        }
    }

    /// On the home shard: sequence a message, acknowledge it, deliver it.
    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        who: ParticipantId,
        cid: &str,
        body: &str,
        ts: u64,
    ) {
        let max_unconfirmed = self.cfg.max_unconfirmed;
        if self
            .store
            .as_ref()
            .is_some_and(|l| l.backlog() >= max_unconfirmed)
        {
            self.stats.errors_sent += 1;
            self.stats.overloaded += 1;
            let frame = error_frame(
                ErrorCode::Overloaded,
                "storage is behind; resend with the same cid",
                Some(cid),
            );
            self.send(from, ShardMsg::ToConn { conn, frame });
            return;
        }
        let c = self.convs.get_mut(&conv).expect("caller checked");
        let from_label = who.to_string();
        let posted = c.post_from(&who, &from_label, cid, body, ts);
        let seq = match posted {
            Posted::New { seq, frame } => {
                self.stats.messages_posted += 1;
                c.touch(self.now.mono_ms);
                if let Some(link) = self.store.as_mut() {
                    link.record(StoredMessage {
                        conv,
                        seq,
                        sender: from_label,
                        cid: cid.into(),
                        body: body.into(),
                        ts,
                    });
                }
                self.fanout(conv, frame, Some((from, conn)), false);
                seq
            }
            Posted::Duplicate { seq } => {
                self.stats.duplicates += 1;
                seq
            }
        };
        let c = self.convs.get_mut(&conv).expect("caller checked");
        if self.store.is_some() && !c.is_confirmed(seq) {
            // `ack` means durably stored: it waits for the bridge.
            c.hold_ack(AckWaiter {
                seq,
                shard: from,
                conn,
                cid: cid.into(),
            });
            return;
        }
        let ack = encode(&ServerFrame::Ack {
            cid: cid.into(),
            conv,
            seq,
        });
        self.send(from, ShardMsg::ToConn { conn, frame: ack });
    }

    /// On the home shard: one `Deliver` to each shard with subscribers.
    fn fanout(
        &mut self,
        conv: ConvId,
        frame: Bytes,
        exclude: Option<(ShardId, ConnKey)>,
        closes: bool,
    ) {
        let Some(c) = self.convs.get(&conv) else {
            return;
        };
        // Per message: no allocation. Subscribers are few, so repeats are found by scanning.
        let subs = c.subscribers();
        for (i, (shard, _)) in subs.iter().enumerate() {
            if subs[..i].iter().any(|(s, _)| s == shard) {
                continue;
            }
            let msg = ShardMsg::Deliver {
                conv,
                frame: frame.clone(),
                exclude,
                closes,
            };
            route(self.id, &mut self.local, &mut self.outgoing, *shard, msg);
        }
    }

    /// On a connection's shard: hand a conversation frame to each local subscriber.
    fn deliver(
        &mut self,
        _from: ShardId,
        conv: ConvId,
        frame: Bytes,
        exclude: Option<(ShardId, ConnKey)>,
        closes: bool,
    ) {
        // The list is taken out for the loop and put back (no copy per message).
        let Some(list) = (if closes {
            self.conv_subs.remove(&conv)
        } else {
            self.conv_subs.get_mut(&conv).map(std::mem::take)
        }) else {
            return;
        };
        for &key in &list {
            if exclude != Some((self.id, key)) {
                self.push(key, frame.clone());
            }
            if closes {
                if let Some(c) = self.conn_mut(key) {
                    c.subs.retain(|x| *x != conv);
                    if c.visitor_conv == Some(conv) {
                        c.visitor_conv = None;
                    }
                }
            }
        }
        if !closes {
            if let Some(slot) = self.conv_subs.get_mut(&conv) {
                *slot = list;
            }
        }
    }
}

/// Queues a message for shard `to`: handled at once when it is this shard.
fn route(
    id: ShardId,
    local: &mut VecDeque<ShardMsg>,
    outgoing: &mut Vec<(ShardId, ShardMsg)>,
    to: ShardId,
    msg: ShardMsg,
) {
    if to == id {
        local.push_back(msg);
    } else {
        outgoing.push((to, msg));
    }
}
