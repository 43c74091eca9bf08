//! Messages between shards. Every value is `Send` (ids, `String`s, `Bytes`), and a message
//! never carries shard state: state stays with its owner, requests travel.
//!
//! A shard plays three roles (the `shard` module), and each takes its own messages:
//! a connection's shard sends conversation requests to the conversation's home shard
//! ([`HomeMsg`]); the home shard answers a connection directly (`ToConn`, `Replay`) or fans
//! out to each shard with subscribers (`Deliver`), all [`ConnMsg`]s; the dispatcher shard
//! hears about new conversations and agents coming and going ([`DispatchMsg`]), and tells
//! home shards about assignments. [`ShardMsg`] is what travels: one of the three.
//!
//! A leaf beside [`crate::conn`]: the roles and the store link (which parks [`HomeMsg`]s
//! while a conversation loads) import it, it imports none of them.

use crate::conn::ConnKey;
use crate::routing::ShardId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchboard_protocol::{AgentId, ConvId, ParticipantId, VisitorId};

/// A relayed signal without a seq.
/// Where a paged replay goes on: after `after`, with `replayed` frames sent so far, and
/// whether all of them were there (`complete` in the final `resumed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayNext {
    pub after: u64,
    pub replayed: u32,
    pub complete: bool,
    /// The resume this replay answers (a connection that resumes again drops the pages of
    /// the earlier one).
    pub chain: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    Typing,
    Read(u64),
}

/// What one shard sends another (or itself): a message for one of its roles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardMsg {
    Home(HomeMsg),
    Dispatch(DispatchMsg),
    Conn(ConnMsg),
    /// For the storage bridge, on the receiving shard's link (an answer to a `command`).
    Link(switchboard_protocol::bridge::BridgeMsg),
}

impl ShardMsg {
    /// `command_done` for the bridge: command `id` went well, or not (`error`: why).
    pub fn command_done(id: u64, error: Option<&str>) -> Self {
        Self::Link(switchboard_protocol::bridge::BridgeMsg::CommandDone {
            id,
            error: error.map(str::to_owned),
        })
    }
}

/// Where the outcome of a request goes: an error frame to a connection, or `command_done`
/// to the bridge (a REST API command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Conn {
        shard: ShardId,
        conn: ConnKey,
    },
    Api {
        shard: ShardId,
        id: u64,
    },
    /// Nobody waits for it (a re-route: refused, it stays where it is).
    Quiet,
}

impl From<HomeMsg> for ShardMsg {
    fn from(m: HomeMsg) -> Self {
        Self::Home(m)
    }
}

impl From<DispatchMsg> for ShardMsg {
    fn from(m: DispatchMsg) -> Self {
        Self::Dispatch(m)
    }
}

impl From<ConnMsg> for ShardMsg {
    fn from(m: ConnMsg) -> Self {
        Self::Conn(m)
    }
}

/// Whether a connection watches as a supervisor (of its site's conversations only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Watch {
    No,
    Supervisor { site: Option<String> },
}

impl Watch {
    /// How the connection `supervisor` (an agent of `site`) watches.
    pub fn of(supervisor: bool, site: Option<&str>) -> Self {
        if supervisor {
            Self::Supervisor {
                site: site.map(str::to_owned),
            }
        } else {
            Self::No
        }
    }

    /// Whether it may watch a conversation of `site`.
    pub fn may_watch(&self, site: Option<&str>) -> bool {
        matches!(self, Self::Supervisor { site: s } if s.as_deref() == site)
    }
}

/// Where a visitor is, as its widget said: `page`, `referrer`, `user_agent`, `lang`, and the
/// `name` and `email` it typed, if any.
pub type Context = std::collections::BTreeMap<String, String>;

/// To a conversation's home shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HomeMsg {
    /// A visitor's first message opens `conv`; the sending connection is its first subscriber.
    Open {
        conv: ConvId,
        visitor: VisitorId,
        /// The visitor's priority in the human queue (its token's).
        priority: i32,
        /// Only agents of its site (and of the team the visitor's entry asked for) take it.
        route: crate::assignment::Route,
        /// Where the visitor is, as its widget said.
        context: Option<Box<Context>>,
        conn: ConnKey,
        cid: String,
        body: String,
        ts: u64,
    },
    /// A message from a participant's connection.
    Post {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        cid: String,
        body: String,
        ts: u64,
    },
    /// Typing or read receipt.
    Signal {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        signal: Signal,
    },
    /// Attach `conn` and replay everything after `last_seq`, then `resumed`. An `observer`
    /// (a supervisor) may watch a conversation it is not in.
    Subscribe {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        observer: Watch,
        last_seq: u64,
        /// Which resume of `conn` this is: every page of its replay carries it.
        chain: u32,
    },
    /// The next page of a paged replay, once `conn` has read the last one.
    ReplayMore {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        observer: Watch,
        next: ReplayNext,
    },
    /// `conn` is gone.
    Unsubscribe { conv: ConvId, conn: ConnKey },
    /// Close `conv` if nobody wrote in it for `conversation_idle_close` (else check again
    /// later). Comes from the home shard's own timer, or from the dispatcher for
    /// conversations listed at start-up that no one has touched since.
    IdleCheck { conv: ConvId },
    /// A participant asks for older messages.
    History {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        /// A supervisor may read what it may watch.
        observer: Watch,
        before: u64,
        limit: u32,
    },
    /// A participant asks to close the conversation.
    Close {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
    },
    /// From the dispatcher: the conversation now belongs to `agent`.
    Assign {
        conv: ConvId,
        agent: AgentId,
        agent_shards: Vec<ShardId>,
    },
    /// From the dispatcher: the visitor's place in the queue, and whether no agent is
    /// online at all (the visitor is leaving a message).
    QueuePosition {
        conv: ConvId,
        position: u32,
        offline: bool,
    },
    /// From the dispatcher: the bot has the conversation (until it hands it over).
    WithBot { conv: ConvId },
    /// A supervisor's note for the conversation's agents only.
    Whisper {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        observer: Watch,
        body: String,
    },
    /// An agent's connection asks to hand `conv` to agent `to`, to `team`, or to whoever
    /// has room.
    Transfer {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        to: Option<AgentId>,
        team: Option<String>,
        note: Option<String>,
    },
    /// A visitor rates its closed conversation.
    Rate {
        conv: ConvId,
        conn: ConnKey,
        who: ParticipantId,
        score: u8,
        comment: Option<String>,
    },
    /// The REST API asks (through the bridge) to close or transfer `conv` as agent `by`;
    /// the outcome goes to the bridge on shard `reply`'s link.
    Api {
        id: u64,
        conv: ConvId,
        by: AgentId,
        as_agent: bool,
        action: switchboard_protocol::bridge::ApiAction,
        reply: ShardId,
    },
    /// A visitor's widget says where it is now (its conversation is open).
    Context {
        conv: ConvId,
        who: ParticipantId,
        context: Box<Context>,
    },
    /// From the dispatcher: `from` no longer has `conv` (it goes to `to`, or to the queue).
    Transferred {
        conv: ConvId,
        from: AgentId,
        to: Option<AgentId>,
        note: Option<String>,
    },
}

impl HomeMsg {
    /// The conversation a message for a home shard is about, when that conversation must be
    /// present (loaded from the store if need be) to handle it.
    pub fn home_conv(&self) -> Option<ConvId> {
        match self {
            Self::Post { conv, .. }
            | Self::Signal { conv, .. }
            | Self::Subscribe { conv, .. }
            | Self::ReplayMore { conv, .. }
            | Self::Close { conv, .. }
            | Self::History { conv, .. }
            | Self::Assign { conv, .. }
            | Self::QueuePosition { conv, .. }
            | Self::WithBot { conv }
            | Self::Transfer { conv, .. }
            | Self::Whisper { conv, .. }
            | Self::Transferred { conv, .. }
            | Self::Rate { conv, .. }
            | Self::Api { conv, .. }
            | Self::Context { conv, .. }
            | Self::IdleCheck { conv } => Some(*conv),
            Self::Open { .. } | Self::Unsubscribe { .. } => None,
        }
    }
}

/// To the dispatcher shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DispatchMsg {
    /// A conversation loaded from the store, for the dispatcher to account for (re-queued
    /// when it has no agent).
    Restore {
        conv: ConvId,
        visitor: VisitorId,
        agent: Option<AgentId>,
        site: Option<String>,
    },
    /// A new conversation waits for an agent, at `priority` (its visitor's).
    Enqueue {
        conv: ConvId,
        visitor: VisitorId,
        priority: i32,
        route: crate::assignment::Route,
    },
    /// A device of `agent` connected (as `conn` on the sending shard).
    AgentOnline {
        agent: AgentId,
        conn: ConnKey,
        teams: Vec<String>,
        site: Option<String>,
    },
    /// Device `conn` of `agent` on the sending shard disconnected.
    AgentOffline { agent: AgentId, conn: ConnKey },
    /// `agent` is away (takes no new conversation) or back, as one of its devices said.
    Away { agent: AgentId, away: bool },
    /// A returning visitor (token presented) sent a frame about its current conversation
    /// on a connection that has none: which one is open, if any?
    FindOpenConv { visitor: VisitorId, conn: ConnKey },
    /// `conv` was closed; `agent` is who had it as the home shard knew it.
    ConvClosed {
        conv: ConvId,
        agent: Option<AgentId>,
    },
    /// The AI layer hands `conv` to a human, at `priority` in the queue, of `team` if it
    /// named one.
    Handoff {
        conv: ConvId,
        priority: i32,
        team: Option<String>,
    },
    /// The AI layer raises `conv`'s priority in the queue (or for when it gets there).
    Prioritize { conv: ConvId, priority: i32 },
    /// `from` hands `conv` to `to`, or to the queue.
    Transfer {
        conv: ConvId,
        from: AgentId,
        to: Option<AgentId>,
        team: Option<String>,
        note: Option<String>,
        /// Where a refusal (and, for the API, the outcome) goes.
        reply: Reply,
    },
}

/// To a connection's shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConnMsg {
    /// Answer to `FindOpenConv`.
    OpenConvIs { conn: ConnKey, conv: Option<ConvId> },
    /// One frame for one connection (an ack, an error).
    ToConn { conn: ConnKey, frame: Bytes },
    /// A frame for every local subscriber of `conv` but `exclude`; `closes` ends their
    /// subscriptions after delivery.
    Deliver {
        conv: ConvId,
        frame: Bytes,
        exclude: Option<(ShardId, ConnKey)>,
        closes: bool,
    },
    /// Answer to `Subscribe` (or `ReplayMore`): frames for `conn`. With `more`, one page of
    /// a longer replay: ask for the next with `ReplayMore` once `conn` has read these. Else
    /// the last, and `conn` is live for `conv` from now on if `ok`.
    Replay {
        conv: ConvId,
        conn: ConnKey,
        frames: Vec<Bytes>,
        ok: bool,
        more: Option<ReplayNext>,
        /// The resume it answers (`Subscribe::chain`).
        chain: u32,
    },
    /// A frame for every device of `agent` on this shard: that it has a conversation
    /// (`assigned`; each device then resumes it), or its presence.
    ToAgent { agent: AgentId, frame: Bytes },
    /// A frame for the local agent connections subscribed to `conv` (a draft, labels).
    DeliverToAgents { conv: ConvId, frame: Bytes },
    /// `agent` is no longer in `conv` (transferred): its local connections leave it.
    AgentLeft { conv: ConvId, agent: AgentId },
    /// `conv`'s home lost it to another node (fenced): its local subscribers are closed
    /// with 1001, to resume at the new home.
    Moved { conv: ConvId },
    /// From a new dispatcher: announce every local agent device to it again.
    Reannounce,
    /// The open conversations of a newly connected agent device.
    AgentConvs {
        conn: ConnKey,
        convs: Vec<(ConvId, VisitorId)>,
    },
}
