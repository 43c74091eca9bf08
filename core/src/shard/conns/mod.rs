//! The connection role of a shard: the connections it accepted, and everything about them.
//!
//! Owns the connection slots (a [`ConnKey`] is a slot and its generation), which local
//! connections are live in each conversation (`conv_subs`), the local devices of each agent,
//! the idle deadlines of connections, their rate limits, and a returning visitor's lookup of
//! its open conversation. It turns client frames into [`HomeMsg`]s for the conversations'
//! home shards (and [`DispatchMsg`]s for the dispatcher), and takes [`ConnMsg`](crate::messages::ConnMsg)s (`incoming`): frames for
//! its connections (`ToConn`, `Deliver`, `Replay`), assignments (`ToAgent`,
//! `AgentConvs`) and lookup answers (`OpenConvIs`).

mod incoming;
mod table;

use crate::assignment::Route;
use crate::auth::Identity;
use crate::config::ClientKind;
use crate::conn::{ConnIo, ConnKey, Now};
use crate::idle::IdleWheel;
use crate::messages::{DispatchMsg, HomeMsg, Signal};
use crate::ratelimit::TokenBucket;
use crate::routing::ClusterView;
use crate::shard::shared::{error_frame, Shared};
use bytes::Bytes;
use std::collections::HashMap;
use switchboard_protocol::client::{decode_client_frame, ClientFrame};
use switchboard_protocol::server::{encode, Role, ServerFrame, PROTOCOL_VERSION};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use switchboard_protocol::{AgentId, CloseCode, ConvId, ErrorCode, ParticipantId, VisitorId};
use table::{Conn, ConnTable, Lookup};

/// Rate-limited frames in a row after which a connection is closed with 1008.
const MAX_STRIKES: u16 = 50;

/// Frames a connection may park while its lookup is answered.
const LOOKUP_PARKED_MAX: usize = 64;

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

/// One shard's connections. See the module docs.
#[derive(Debug)]
pub(super) struct ConnRole {
    /// Visitor ids and the ids of the conversations visitors open here.
    rng: fastrand::Rng,
    table: ConnTable,
    /// Local connections live-subscribed to each conversation.
    conv_subs: HashMap<ConvId, Vec<ConnKey>>,
    /// Local devices of each agent.
    agents: HashMap<AgentId, Vec<ConnKey>>,
    /// Each local agent device's teams, to announce it again to a new dispatcher.
    agent_teams: HashMap<ConnKey, Vec<String>>,
    idle: IdleWheel<ConnKey>,
    /// Agents whose accounts are disabled (the bridge says which): their devices are
    /// closed and their upgrades refused.
    disabled: std::collections::HashSet<AgentId>,
}

impl ConnRole {
    pub fn new(rng: fastrand::Rng) -> Self {
        Self {
            rng,
            table: ConnTable::default(),
            conv_subs: HashMap::new(),
            agents: HashMap::new(),
            agent_teams: HashMap::new(),
            idle: IdleWheel::default(),
            disabled: Default::default(),
        }
    }

    /// Whether `agent`'s account is disabled.
    pub fn is_disabled(&self, agent: &AgentId) -> bool {
        self.disabled.contains(agent)
    }

    /// `agent`'s account was disabled (its devices here are closed with 4002) or enabled.
    pub fn set_access(&mut self, agent: AgentId, disabled: bool) {
        if !disabled {
            self.disabled.remove(&agent);
            return;
        }
        for &key in self.agents.get(&agent).into_iter().flatten() {
            if let Some(c) = self.table.get_mut(key) {
                c.close_with(CloseCode::AccountDisabled);
            }
        }
        self.disabled.insert(agent);
    }

    /// Every disabled account, as the bridge lists them when a link starts.
    pub fn set_disabled(&mut self, agents: Vec<AgentId>) {
        self.disabled.clear();
        for a in agents {
            self.set_access(a, true);
        }
    }

    /// A fresh random visitor id.
    pub fn new_visitor_id(&mut self) -> VisitorId {
        VisitorId(self.rng.u64(..))
    }

    /// The runtime's view of a connection; `None` once it is gone.
    pub fn io(&mut self, key: ConnKey) -> Option<&mut ConnIo> {
        self.conn_mut(key).map(|c| &mut c.io)
    }

    pub fn connection_count(&self) -> usize {
        self.table.len()
    }

    fn conn_mut(&mut self, key: ConnKey) -> Option<&mut Conn> {
        self.table.get_mut(key)
    }

    /// Queues a frame for a local connection; closes it as a slow consumer on overflow.
    fn push(&mut self, sh: &mut Shared, key: ConnKey, frame: Bytes) {
        let limit = sh.cfg.max_outbox_bytes;
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
        sh.stats.frames_queued += 1;
    }

    fn push_error(
        &mut self,
        sh: &mut Shared,
        key: ConnKey,
        code: ErrorCode,
        message: &str,
        cid: Option<&str>,
    ) {
        sh.stats.errors_sent += 1;
        self.push(sh, key, error_frame(code, message, cid));
    }

    /// Registers an authenticated connection and queues its `welcome` frame.
    pub fn connect(
        &mut self,
        sh: &mut Shared,
        signer: &TokenSigner,
        identity: Identity,
    ) -> ConnKey {
        let now = sh.now;
        let Identity {
            who,
            client,
            resumed,
            priority,
            supervisor,
            teams,
            site,
        } = identity;
        let lookup = match who {
            ParticipantId::Visitor(_) if resumed => Lookup::Due,
            _ => Lookup::Done,
        };
        let conn = Conn {
            who: who.clone(),
            client,
            priority,
            supervisor,
            route: {
                let team = match &who {
                    ParticipantId::Visitor(_) => teams.first().cloned(),
                    ParticipantId::Agent(_) => None,
                };
                (site.is_some() || team.is_some()).then(|| {
                    Box::new(Route {
                        site: site.clone(),
                        team,
                    })
                })
            },
            io: ConnIo::default(),
            context: None,
            visitor_conv: None,
            lookup,
            subs: Vec::new(),
            last_seen: now.mono_ms,
            pinged: false,
            rate: TokenBucket::new(sh.cfg.rate_burst, now.mono_ms),
            strikes: 0,
            replays: None,
        };
        let key = self.table.insert(conn);
        sh.stats.connections[role_index(&who)][client_index(client)] += 1;

        let deadline = sh.cfg.idle_deadline(client);
        self.idle
            .schedule(key, now.mono_ms + deadline.as_millis() as u64 / 2);
        let (role, token) = match &who {
            ParticipantId::Visitor(v) => {
                let expires = now.unix_ms / 1000 + sh.cfg.visitor_token_ttl_s;
                (
                    Role::Visitor,
                    Some(signer.mint(
                        TokenKind::Visitor,
                        &crate::auth::visitor_subject(*v, priority, site.as_deref()),
                        expires,
                    )),
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
            shard: sh.id,
            idle_timeout_s: deadline.as_secs() as u32,
            greeting: match role {
                Role::Visitor => sh
                    .sites
                    .get(site.as_deref())
                    .and_then(|s| s.welcome_text.as_deref())
                    .map(Into::into),
                Role::Agent => None,
            },
        });
        self.push(sh, key, welcome);
        if let ParticipantId::Agent(agent) = who {
            self.agents.entry(agent.clone()).or_default().push(key);
            self.agent_teams.insert(key, teams.clone());
            sh.send(
                sh.dispatcher(),
                DispatchMsg::AgentOnline {
                    agent,
                    conn: key,
                    teams,
                    site,
                },
            );
        }
        key
    }

    /// Forgets a connection that has closed, and tells the shards that knew of it.
    pub fn disconnect(&mut self, sh: &mut Shared, key: ConnKey) {
        let Some(conn) = self.table.remove(key) else {
            return;
        };
        sh.stats.connections[role_index(&conn.who)][client_index(conn.client)] -= 1;
        for conv in conn.subs {
            if let Some(list) = self.conv_subs.get_mut(&conv) {
                list.retain(|k| *k != key);
                if list.is_empty() {
                    self.conv_subs.remove(&conv);
                }
            }
            sh.send(sh.home(conv), HomeMsg::Unsubscribe { conv, conn: key });
        }
        if let ParticipantId::Agent(agent) = conn.who {
            self.agent_teams.remove(&key);
            if let Some(list) = self.agents.get_mut(&agent) {
                list.retain(|k| *k != key);
                if list.is_empty() {
                    self.agents.remove(&agent);
                }
            }
            sh.send(
                sh.dispatcher(),
                DispatchMsg::AgentOffline { agent, conn: key },
            );
        }
    }

    /// A new dispatcher asks: every local agent device is announced to it again.
    pub fn reannounce(&mut self, sh: &mut Shared) {
        for (agent, keys) in &self.agents {
            for &key in keys {
                let Some(c) = self.table.get(key) else {
                    continue;
                };
                let msg = DispatchMsg::AgentOnline {
                    agent: agent.clone(),
                    conn: key,
                    teams: self.agent_teams.get(&key).cloned().unwrap_or_default(),
                    site: c.site().map(str::to_owned),
                };
                sh.send(sh.dispatcher(), msg);
            }
        }
    }

    /// The membership changed from `old`: a connection following a conversation whose home
    /// moved is closed with 1001, and resumes from its last seq at the new home when it
    /// reconnects (the way a client survives a node's death; docs/cluster.md).
    pub fn home_moved(&mut self, sh: &mut Shared, old: &ClusterView) {
        for conn in self.table.iter_mut() {
            if conn.subs.iter().any(|&c| old.home(c) != sh.home(c)) {
                conn.close_with(CloseCode::GoingAway);
            }
        }
    }

    /// `conv`'s home was fenced off: its local subscribers are closed with 1001.
    pub fn conv_moved(&mut self, conv: ConvId) {
        for &key in self.conv_subs.get(&conv).into_iter().flatten() {
            if let Some(c) = self.table.get_mut(key) {
                c.close_with(CloseCode::GoingAway);
            }
        }
    }

    /// Any sign of life (a frame of any kind, a pong): one store, no timer.
    pub fn touch(&mut self, key: ConnKey, now: Now) {
        if let Some(conn) = self.conn_mut(key) {
            conn.seen(now.mono_ms);
        }
    }

    /// A binary message: refused with an error frame.
    pub fn on_binary(&mut self, sh: &mut Shared, key: ConnKey, now: Now) {
        self.touch(key, now);
        self.push_error(
            sh,
            key,
            ErrorCode::BinaryUnsupported,
            "binary messages are not supported; send JSON text",
            None,
        );
    }

    /// A text message from a client.
    pub fn on_text(&mut self, sh: &mut Shared, key: ConnKey, text: &str) {
        let now = sh.now;
        let (rate, burst) = (sh.cfg.rate_per_sec, sh.cfg.rate_burst);
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        conn.seen(now.mono_ms);
        if !conn.rate.try_take(now.mono_ms, rate, burst) {
            conn.strikes += 1;
            if conn.strikes >= MAX_STRIKES {
                conn.io.close = Some(CloseCode::PolicyViolation);
                conn.io.wake();
                sh.stats.rate_limited += 1;
                return;
            }
            sh.stats.rate_limited += 1;
            let cid = decode_client_frame(text).ok().and_then(|f| match f {
                ClientFrame::Msg { cid, .. } => Some(cid),
                _ => None,
            });
            self.push_error(
                sh,
                key,
                ErrorCode::RateLimited,
                "too many frames; slow down and resend",
                cid.as_deref(),
            );
            return;
        }
        conn.strikes = 0;
        match decode_client_frame(text) {
            Ok(frame) => self.on_frame(sh, key, frame),
            Err(e) => self.push_error(sh, key, e.code, &e.message, e.cid.as_deref()),
        }
    }

    fn on_frame(&mut self, sh: &mut Shared, key: ConnKey, frame: ClientFrame) {
        let ts = sh.now.unix_ms;
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let frame = match conn.lookup {
            Lookup::Done => frame,
            _ => match self.lookup_first(sh, key, frame) {
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
                Some(conv) => sh.send(
                    sh.home(conv),
                    HomeMsg::Post {
                        conv,
                        conn: key,
                        who,
                        cid,
                        body,
                        ts,
                    },
                ),
                None if is_agent => self.push_error(
                    sh,
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
                        if sh.home(c) == sh.id {
                            break c;
                        }
                    };
                    let conn = self.conn_mut(key).expect("present above");
                    let priority = conn.priority;
                    let route = conn.route.as_deref().cloned().unwrap_or_default();
                    let context = conn.context.clone();
                    conn.visitor_conv = Some(conv);
                    conn.subs.push(conv);
                    self.conv_subs.entry(conv).or_default().push(key);
                    sh.send(
                        sh.home(conv),
                        HomeMsg::Open {
                            conv,
                            visitor,
                            priority,
                            route,
                            context,
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
                self.push_error(sh, key, code, what, None);
            }
            ClientFrame::Typing { conv } | ClientFrame::Read { conv, .. } => {
                let signal = match frame {
                    ClientFrame::Read { seq, .. } => Signal::Read(seq),
                    _ => Signal::Typing,
                };
                let conv = target(conv, conn).expect("checked above");
                let msg = HomeMsg::Signal {
                    conv,
                    conn: key,
                    who,
                    signal,
                };
                sh.send(sh.home(conv), msg);
            }
            ClientFrame::Resume { conv, last_seq } => {
                if !conn.subs.contains(&conv) {
                    conn.subs.push(conv);
                }
                if !is_agent {
                    conn.visitor_conv = Some(conv);
                }
                // A resume again while one is in progress replaces it: the pages of the
                // earlier one are dropped when they come.
                let chain = conn.replays().start(conv);
                let observer = crate::messages::Watch::of(conn.supervisor, conn.site());
                // Until the replay arrives the connection is not live: anything delivered
                // meanwhile is part of the replay, so nothing arrives twice.
                if let Some(list) = self.conv_subs.get_mut(&conv) {
                    list.retain(|k| *k != key);
                }
                sh.send(
                    sh.home(conv),
                    HomeMsg::Subscribe {
                        conv,
                        conn: key,
                        who,
                        observer,
                        last_seq,
                        chain,
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
                    let observer = crate::messages::Watch::of(conn.supervisor, conn.site());
                    let msg = HomeMsg::History {
                        conv,
                        conn: key,
                        who,
                        observer,
                        before: before.unwrap_or(u64::MAX),
                        limit,
                    };
                    sh.send(sh.home(conv), msg);
                }
                None if is_agent => self.push_error(
                    sh,
                    key,
                    ErrorCode::MissingField,
                    "agents must name `conv`",
                    None,
                ),
                None => self.push_error(
                    sh,
                    key,
                    ErrorCode::NoConversation,
                    "no conversation yet",
                    None,
                ),
            },
            ClientFrame::Close { conv } => {
                sh.send(
                    sh.home(conv),
                    HomeMsg::Close {
                        conv,
                        conn: key,
                        who,
                    },
                );
            }
            ClientFrame::Whisper { conv, body } => {
                let observer = self.conn_mut(key).map_or(crate::messages::Watch::No, |c| {
                    crate::messages::Watch::of(c.supervisor, c.site())
                });
                let msg = HomeMsg::Whisper {
                    conv,
                    conn: key,
                    who,
                    observer,
                    body,
                };
                sh.send(sh.home(conv), msg);
            }
            ClientFrame::Presence { away } => match who {
                ParticipantId::Agent(agent) => {
                    sh.send(sh.dispatcher(), DispatchMsg::Away { agent, away });
                }
                ParticipantId::Visitor(_) => {
                    let message = "only agents are away or online";
                    self.push_error(sh, key, ErrorCode::Forbidden, message, None);
                }
            },
            ClientFrame::Rate { .. } | ClientFrame::Context { .. } if is_agent => {
                let message = "only visitors rate conversations and say where they are";
                self.push_error(sh, key, ErrorCode::Forbidden, message, None);
            }
            ClientFrame::Rate {
                conv,
                score,
                comment,
            } => {
                let msg = HomeMsg::Rate {
                    conv,
                    conn: key,
                    who,
                    score,
                    comment,
                };
                sh.send(sh.home(conv), msg);
            }
            ClientFrame::Context {
                page,
                referrer,
                user_agent,
                lang,
                name,
                email,
            } => {
                let context: crate::messages::Context = [
                    ("page", page),
                    ("referrer", referrer),
                    ("user_agent", user_agent),
                    ("lang", lang),
                    ("name", name),
                    ("email", email),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                .collect();
                let context = Box::new(context);
                conn.context = Some(context.clone());
                if let Some(conv) = conn.visitor_conv {
                    let msg = HomeMsg::Context { conv, who, context };
                    sh.send(sh.home(conv), msg);
                }
            }
            ClientFrame::Transfer {
                conv,
                to,
                team,
                note,
            } => {
                let msg = HomeMsg::Transfer {
                    conv,
                    conn: key,
                    who,
                    to,
                    team,
                    note,
                };
                sh.send(sh.home(conv), msg);
            }
        }
    }

    /// `agent` is no longer in `conv`: its local connections leave it (and tell its home).
    pub fn agent_left(&mut self, sh: &mut Shared, conv: ConvId, agent: &AgentId) {
        let Some(devices) = self.agents.get(agent).cloned() else {
            return;
        };
        if let Some(list) = self.conv_subs.get_mut(&conv) {
            list.retain(|k| !devices.contains(k));
        }
        for key in devices {
            if let Some(c) = self.conn_mut(key) {
                if c.subs.contains(&conv) {
                    c.leave(conv);
                    sh.send(sh.home(conv), HomeMsg::Unsubscribe { conv, conn: key });
                }
            }
        }
    }

    /// Idle deadlines of connections: ping, close, or check again later.
    pub fn tick(&mut self, sh: &mut Shared) {
        let now = sh.now;
        for key in self.idle.take_due(now.mono_ms) {
            let Some(conn) = self.table.get_mut(key) else {
                continue;
            };
            let deadline = sh.cfg.idle_deadline(conn.client).as_millis() as u64;
            if let Some(at) = conn.idle_check(now.mono_ms, deadline) {
                self.idle.schedule(key, at);
            }
        }
    }

    /// A returning visitor's frame while its open conversation may still be unknown: parks
    /// it while a lookup is out, or starts one for a frame about "my conversation" (no
    /// `conv`, none current). Gives the frame back when it is to be handled now.
    fn lookup_first(
        &mut self,
        sh: &mut Shared,
        key: ConnKey,
        frame: ClientFrame,
    ) -> Option<ClientFrame> {
        let conn = self.conn_mut(key)?;
        let about_current = match &frame {
            ClientFrame::Msg { conv, .. }
            | ClientFrame::Typing { conv }
            | ClientFrame::Read { conv, .. }
            | ClientFrame::History { conv, .. } => conv.is_none(),
            ClientFrame::Context { .. }
            | ClientFrame::Rate { .. }
            | ClientFrame::Resume { .. }
            | ClientFrame::Close { .. }
            | ClientFrame::Whisper { .. }
            | ClientFrame::Presence { .. }
            | ClientFrame::Transfer { .. } => false,
        };
        match &mut conn.lookup {
            Lookup::Asked(parked) if parked.len() < LOOKUP_PARKED_MAX => parked.push(frame),
            Lookup::Asked(_) => self.push_error(
                sh,
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
                sh.send(
                    sh.dispatcher(),
                    DispatchMsg::FindOpenConv { visitor, conn: key },
                );
            }
        }
        None
    }

    /// Asks every connection to close with 1001 (graceful shutdown).
    pub fn begin_shutdown(&mut self) {
        for conn in self.table.iter_mut() {
            conn.close_with(CloseCode::GoingAway);
        }
    }
}
