//! The link between gateway shards and the storage bridge, over a Unix socket.
//!
//! Each frame is a 4-byte big-endian length followed by that many bytes of JSON (one
//! [`BridgeMsg`]). The first frame each way is the handshake: the gateway sends `hello` with
//! its protocol version, the bridge answers `welcome` or `refuse` (and closes). Requests
//! carry a `req` id the answer repeats, so a shard can pipeline them.
//!
//! Sans-IO: [`encode`] appends a frame to a buffer, [`decode`] takes one complete frame off
//! the front of a buffer, telling "need more bytes" apart from "invalid".
//!
//! Every frame is bounded by construction, never by luck: whatever can grow (a persist
//! batch, a history or resume read, a conversation load, the open-conversation listing) is
//! cut into pages of at most [`PAGE_BYTES`] of payload, and each page says where to go on.
//! One message always fits a page, because the gateway refuses at start-up a
//! `max_message_bytes` above [`MAX_MESSAGE_BYTES`]. [`encode`] refuses what [`decode`] would
//! refuse, so a too-large frame is an error on the side that made it, never a link that
//! breaks and is retried forever.

use crate::ids::{ConvId, VisitorId};
use serde::{Deserialize, Serialize};

/// Version of this link protocol; both sides must agree exactly.
/// 2: paged reads (`more`, `next`), seq leases, bounded frames.
/// 3: the AI layer: the bot's mode in `welcome`, `assist` from the bridge; agent accounts:
/// the disabled ones in `welcome`, `agent_access` when one changes.
/// 5: clusters: `node` and `shards` in `hello`, `cluster`, `relay`, `fenced`, lease epochs.
pub const BRIDGE_PROTOCOL_VERSION: u32 = 5;
/// The longest bot reply or draft the bridge sends, in bytes (longer ones are cut at a
/// character boundary): far under any `max_message_bytes` a gateway allows.
pub const MAX_ASSIST_TEXT: usize = 8 * 1024;
/// Labels one `assist` carries at most, and the longest key or value.
pub const MAX_ASSIST_LABELS: usize = 16;
pub const MAX_LABEL_LEN: usize = 128;
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// The most payload (by [`StoredMessage::encoded_len`] and friends) one frame carries; the
/// rest of [`MAX_FRAME`] is room for the envelope.
pub const PAGE_BYTES: usize = 8 * 1024 * 1024;
/// The room one stored message takes besides its `body` and `cid`: the keys, the sender
/// (an id of at most 64 bytes) and three numbers, with margin.
pub const STORED_OVERHEAD: usize = 256;
/// The largest `max_message_bytes` a gateway may be configured with: one client frame of
/// that size stores as one message that still fits a page.
pub const MAX_MESSAGE_BYTES: usize = PAGE_BYTES - STORED_OVERHEAD;
/// The longest lease of seqs a gateway may ask for at once.
pub const MAX_SEQ_LEASE: u64 = 1 << 20;

/// The length of `s` as a JSON string, quotes included, exactly as `serde_json` writes it.
pub fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// One stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub conv: ConvId,
    pub seq: u64,
    /// Visitor id or agent id, as in `from`.
    pub sender: String,
    pub cid: String,
    pub body: String,
    /// Unix milliseconds.
    pub ts: u64,
}

impl StoredMessage {
    /// An upper bound of its encoded size (exact strings, numbers at their widest).
    pub fn encoded_len(&self) -> usize {
        json_str_len(&self.body)
            + json_str_len(&self.cid)
            + json_str_len(&self.sender)
            + STORED_OVERHEAD
            - 64
    }
}

impl StoredMessage {
    /// A bound of [`Self::encoded_len`] in O(1) (every byte at its widest escape), for hot
    /// paths that only need to stay under a limit.
    pub fn max_encoded_len(&self) -> usize {
        6 * (self.body.len() + self.cid.len() + self.sender.len()) + STORED_OVERHEAD
    }
}

/// Takes messages (in the order given) while their [`StoredMessage::encoded_len`] adds up to
/// at most `budget`, and always the first: how many.
pub fn fitting(messages: &[StoredMessage], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, m) in messages.iter().enumerate() {
        used += m.encoded_len();
        if used > budget && i > 0 {
            return i;
        }
    }
    messages.len()
}

/// When the bot answers visitors: the bridge's AI configuration, told to each shard in
/// `welcome`. The dispatcher shard's link decides for the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    /// No bot: every conversation goes to the human queue at once.
    #[default]
    Off,
    /// The bot has every new conversation until it hands it to a human.
    BotFirst,
    /// The bot has new conversations while no agent is online; they go to the human queue
    /// as soon as one is.
    WhenNoAgent,
}

impl BotMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::BotFirst => "bot_first",
            Self::WhenNoAgent => "when_no_agent",
        }
    }
}

/// What the AI layer decided about one visitor message ([`BridgeMsg::Assist`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assist {
    /// A reply for the visitor, sent as the bot while the bot has the conversation (a draft
    /// for its agent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// A reply only the agent sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    /// Which plugin wrote the reply or draft.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Priority in the human queue, higher first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Hand the conversation to a human, for this reason (the agent sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
}

impl Assist {
    /// Cuts every text to its bound ([`MAX_ASSIST_TEXT`], [`MAX_ASSIST_LABELS`],
    /// [`MAX_LABEL_LEN`]), so that an assist always fits a frame and a message.
    pub fn bounded(mut self) -> Self {
        for text in [&mut self.reply, &mut self.draft, &mut self.handoff]
            .into_iter()
            .flatten()
        {
            cut(text, MAX_ASSIST_TEXT);
        }
        cut(&mut self.by, MAX_LABEL_LEN);
        while self.labels.len() > MAX_ASSIST_LABELS {
            self.labels.pop_last();
        }
        self.labels = std::mem::take(&mut self.labels)
            .into_iter()
            .map(|(mut k, mut v)| {
                cut(&mut k, MAX_LABEL_LEN);
                cut(&mut v, MAX_LABEL_LEN);
                (k, v)
            })
            .collect();
        self
    }

    /// Nothing to act on.
    pub fn is_empty(&self) -> bool {
        self.reply.is_none()
            && self.draft.is_none()
            && self.labels.is_empty()
            && self.priority.is_none()
            && self.handoff.is_none()
    }
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// A conversation's lifecycle facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConvEvent {
    /// A new conversation, with its first seq lease (see `SeqLease`): one fact, so that no
    /// lease is ever written for a conversation the store does not have yet.
    Opened {
        conv: ConvId,
        visitor: VisitorId,
        ts: u64,
        #[serde(default)]
        lease: u64,
        /// Its site; none: the default site.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
    },
    Assigned {
        conv: ConvId,
        agent: String,
        ts: u64,
    },
    Closed {
        conv: ConvId,
        by: String,
        ts: u64,
    },
    /// Where the visitor is, as its widget said (page, referrer, user agent, language).
    Context {
        conv: ConvId,
        context: std::collections::BTreeMap<String, String>,
    },
    /// The visitor rated the closed conversation (a second rating replaces the first).
    Rated {
        conv: ConvId,
        score: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        ts: u64,
    },
    /// The gateway may hand out seqs up to `upto`: written (and confirmed) before any of
    /// them is used, so that after a crash the next seq starts above every seq anyone saw.
    SeqLease {
        conv: ConvId,
        upto: u64,
        /// The epoch of the conversation's lease when this gateway took it (`ConvInfo`;
        /// 0 for a conversation it opened): an extension from an older epoch is refused
        /// (`fenced`), because another node has taken the conversation since.
        #[serde(default)]
        epoch: u64,
    },
    /// A gateway stopping cleanly hands back what it did not use: seqs above `at` were never
    /// shown, so the lease may come down to it (`at` is the newest seq handed out, so never
    /// below a stored seq), but only while it is at most `held`, the most this gateway
    /// leased: a release that lands late, after another gateway has taken a lease above
    /// it, changes nothing.
    SeqRelease {
        conv: ConvId,
        at: u64,
        held: u64,
    },
}

impl ConvEvent {
    /// An upper bound of its encoded size.
    pub fn encoded_len(&self) -> usize {
        let text = match self {
            Self::Assigned { agent, .. } => json_str_len(agent),
            Self::Closed { by, .. } => json_str_len(by),
            Self::Opened { site: Some(s), .. } => json_str_len(s),
            Self::Context { context, .. } => context
                .iter()
                .map(|(k, v)| json_str_len(k) + json_str_len(v) + 2)
                .sum(),
            Self::Rated { comment, .. } => comment.as_deref().map_or(0, json_str_len),
            Self::Opened { site: None, .. } | Self::SeqLease { .. } | Self::SeqRelease { .. } => 0,
        };
        text + 160
    }
}

/// An open conversation and its agent, if assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenConv {
    pub conv: ConvId,
    pub visitor: VisitorId,
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// A client message id seen in a conversation, for dedupe after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCid {
    pub seq: u64,
    pub sender: String,
    pub cid: String,
}

impl SeenCid {
    /// An upper bound of its encoded size.
    pub fn encoded_len(&self) -> usize {
        json_str_len(&self.sender) + json_str_len(&self.cid) + 48
    }
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvInfo {
    pub visitor: VisitorId,
    pub agent: Option<String>,
    /// Its site; none: the default site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub closed: bool,
    /// The newest stored seq (0 when no message is stored).
    pub last_seq: u64,
    /// Every seq up to this one is stored or was never used (seqs above the newest stored
    /// one may have been shown before a crash and are skipped): the next seq is above it.
    pub seq_floor: u64,
    /// Seqs may be handed out up to this one (the lease the load took, already durable).
    pub seq_lease: u64,
    /// The lease's epoch, raised by every load: the fencing token of this home
    /// (`ConvEvent::SeqLease`).
    #[serde(default)]
    pub epoch: u64,
    /// The newest messages, oldest first, as many as fit half a page.
    pub recent: Vec<StoredMessage>,
    /// The client message ids of the newest messages (as many as asked), oldest first.
    pub cids: Vec<SeenCid>,
}

/// What the REST API asks of a conversation, on an agent's behalf (its tools over HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ApiAction {
    Close,
    /// A system message (from `system:switchboard`) to every participant; `cid` makes a
    /// resend harmless.
    Post {
        cid: String,
        body: String,
    },
    /// To agent `to`, to `team`'s queue, or to whoever has room (neither).
    Transfer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// What a gateway needs to know of a site (other than the default one) to admit its
/// visitors and answer them when nobody can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRules {
    pub id: String,
    /// Exact `Origin` values its visitors' pages may have; none: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// Business hours (see [`crate::hours`]); empty: always open.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hours: String,
    /// Greets its visitors in `welcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_text: Option<String>,
    /// Told its visitors when nobody can answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_text: Option<String>,
}

/// A live node of the cluster: its number and how many shards it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub num: u16,
    pub shards: u32,
}

/// One shard message crossing nodes: from shard `from` to shard `to` (shard ids name their
/// node in their high 16 bits), the message as the gateway's JSON text, passed through
/// untouched. (A string, not a raw JSON value: serde cannot read raw values inside this
/// internally tagged enum.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    pub to: u32,
    pub from: u32,
    pub msg: String,
}

impl Relayed {
    /// The node of shard `to`.
    pub fn node(&self) -> u16 {
        (self.to >> 16) as u16
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BridgeMsg {
    // ---- handshake ----
    Hello {
        version: u32,
        shard: u32,
        /// The gateway's node number in its cluster (0: no cluster), and how many shards it
        /// runs.
        #[serde(default)]
        node: u16,
        #[serde(default)]
        shards: u32,
    },
    Welcome {
        version: u32,
        /// When the bot answers (`off` from a bridge without an AI configuration).
        #[serde(default)]
        bot: BotMode,
        /// Agents whose accounts are disabled: their tokens open nothing.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        disabled: Vec<String>,
        /// The sites besides the default one: visitors naming another are refused.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sites: Vec<SiteRules>,
    },
    Refuse {
        reason: String,
    },

    // ---- gateway -> bridge ----
    /// Store these messages and events; answered by `persisted` once committed.
    Persist {
        req: u64,
        messages: Vec<StoredMessage>,
        events: Vec<ConvEvent>,
    },
    /// What the store knows of a conversation, with its `recent` newest messages (to rebuild
    /// the resume window, as many as fit) and their cids (the dedupe memory) after a gateway
    /// restart. Takes a new seq lease of `lease` seqs above the floor.
    LoadConv {
        req: u64,
        conv: ConvId,
        recent: u32,
        cids: u32,
        lease: u64,
    },
    /// Conversations not closed with an id above `after` (in id order), at most `limit`:
    /// one page of the listing the dispatcher reads after a restart.
    OpenConvs {
        req: u64,
        after: Option<ConvId>,
        limit: u32,
    },
    /// Messages with `after < seq < before`, oldest first, at most `limit` and at most
    /// `bytes` (by [`StoredMessage::encoded_len`]; never more than a page, always one): the
    /// oldest of those when `oldest_first` (a resume reading forward), else the newest
    /// (history reading back).
    History {
        req: u64,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        oldest_first: bool,
        bytes: u32,
    },

    // ---- bridge -> gateway ----
    Persisted {
        req: u64,
    },
    /// The request failed; the gateway retries `persist` later.
    Failed {
        req: u64,
        reason: String,
    },
    /// `info` is `None` for a conversation the store has never seen.
    ConvLoaded {
        req: u64,
        conv: ConvId,
        info: Option<ConvInfo>,
    },
    /// `more`: the page stopped at `limit` or at the page size, so more may match (past
    /// the newest given when `oldest_first`, before the oldest given otherwise).
    HistoryIs {
        req: u64,
        conv: ConvId,
        messages: Vec<StoredMessage>,
        more: bool,
    },
    /// `next`: where the next page starts (`after`), when there may be one.
    OpenConvsAre {
        req: u64,
        convs: Vec<OpenConv>,
        next: Option<ConvId>,
    },
    /// Unasked, to every shard: an agent's account was disabled (its devices are closed
    /// with 4002, its tokens refused) or enabled again.
    AgentAccess {
        agent: String,
        disabled: bool,
    },
    /// Unasked, to the dispatcher shard's link: do `action` to `conv` as agent `by` (the REST
    /// API's close and transfer). Answered by `command_done` with the same `id`.
    Command {
        id: u64,
        conv: ConvId,
        by: String,
        /// `by` acts as the conversation's agent (not as a supervisor): refused unless it
        /// has the conversation now (the store may not know of a transfer yet).
        #[serde(default)]
        as_agent: bool,
        action: ApiAction,
    },
    /// Gateway -> bridge, from the dispatcher shard: agents who came online or went offline
    /// (`full`: `online` is everyone online now, sent when the link starts).
    Presence {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        online: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        offline: Vec<String>,
        #[serde(default)]
        full: bool,
    },
    /// Gateway -> bridge: how command `id` went (`error`: why it was refused).
    CommandDone {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Unasked, to every shard: the sites changed; here they all are (besides the default).
    Sites {
        sites: Vec<SiteRules>,
    },
    /// Unasked, before the `persisted` of the same request: lease extensions of these
    /// conversations were refused, because another node loaded them since (their epoch
    /// moved on). The home forgets them; their clients resume at the new home.
    Fenced {
        convs: Vec<ConvId>,
    },
    /// Unasked, to every shard, on every change and when a link starts: the live nodes of
    /// the cluster (docs/cluster.md), and whether Redis answers.
    Cluster {
        nodes: Vec<ClusterNode>,
        redis: bool,
    },
    /// Shard messages crossing nodes: gateway -> bridge, for shards of other nodes (the
    /// bridge sends them on through Redis, batched per node); bridge -> gateway, from other
    /// nodes, for the shard whose link carries them.
    Relay {
        items: Vec<Relayed>,
    },
    /// Unasked: what the AI layer decided about visitor message `seq` of `conv`, on the
    /// link of the shard that stored it (the conversation's home). Never answered: a bot
    /// reply is stored like any message, and one lost with the link is lost (the visitor's
    /// message is not).
    Assist {
        conv: ConvId,
        seq: u64,
        #[serde(flatten)]
        assist: Assist,
    },
}

impl BridgeMsg {
    /// The request id a request carries and its answer repeats.
    pub fn req(&self) -> Option<u64> {
        match self {
            Self::Persist { req, .. }
            | Self::LoadConv { req, .. }
            | Self::OpenConvs { req, .. }
            | Self::History { req, .. }
            | Self::Persisted { req }
            | Self::Failed { req, .. }
            | Self::ConvLoaded { req, .. }
            | Self::HistoryIs { req, .. }
            | Self::OpenConvsAre { req, .. } => Some(*req),
            Self::Hello { .. }
            | Self::Welcome { .. }
            | Self::Refuse { .. }
            | Self::AgentAccess { .. }
            | Self::Sites { .. }
            | Self::Command { .. }
            | Self::CommandDone { .. }
            | Self::Presence { .. }
            | Self::Fenced { .. }
            | Self::Cluster { .. }
            | Self::Relay { .. }
            | Self::Assist { .. } => None,
        }
    }

    /// Its name on the wire, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Welcome { .. } => "welcome",
            Self::Refuse { .. } => "refuse",
            Self::Persist { .. } => "persist",
            Self::LoadConv { .. } => "load_conv",
            Self::OpenConvs { .. } => "open_convs",
            Self::History { .. } => "history",
            Self::Persisted { .. } => "persisted",
            Self::Failed { .. } => "failed",
            Self::ConvLoaded { .. } => "conv_loaded",
            Self::HistoryIs { .. } => "history_is",
            Self::OpenConvsAre { .. } => "open_convs_are",
            Self::Assist { .. } => "assist",
            Self::AgentAccess { .. } => "agent_access",
            Self::Sites { .. } => "sites",
            Self::Command { .. } => "command",
            Self::CommandDone { .. } => "command_done",
            Self::Presence { .. } => "presence",
            Self::Fenced { .. } => "fenced",
            Self::Cluster { .. } => "cluster",
            Self::Relay { .. } => "relay",
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Appends `msg` as one frame, or refuses it (leaving `out` as it was) when [`decode`]
/// would refuse it as too large.
pub fn encode(msg: &BridgeMsg, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, msg).expect("bridge messages serialise");
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(CodecError::TooLarge(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Takes one frame off the front of `buf`: `Ok(None)` when it is not complete yet.
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<BridgeMsg>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let msg =
        serde_json::from_slice(&buf[4..4 + len]).map_err(|e| CodecError::Malformed(e.to_string()));
    buf.drain(..4 + len);
    msg.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BridgeMsg {
        BridgeMsg::Persist {
            req: 7,
            messages: vec![StoredMessage {
                conv: ConvId(1),
                seq: 2,
                sender: "v0000000000000001".into(),
                cid: "c\"1".into(),
                body: "héllo\n".into(),
                ts: 3,
            }],
            events: vec![ConvEvent::Opened {
                conv: ConvId(1),
                visitor: VisitorId(1),
                ts: 3,
                lease: 64,
                site: Some("shop".into()),
            }],
        }
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        encode(&sample(), &mut wire).unwrap();
        encode(&BridgeMsg::Persisted { req: 7 }, &mut wire).unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(m) = decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![sample(), BridgeMsg::Persisted { req: 7 }]);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut buf = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        assert_eq!(decode(&mut buf), Err(CodecError::TooLarge(MAX_FRAME + 1)));
        let mut buf = vec![0, 0, 0, 3, b'{', b'x', b'}'];
        assert!(matches!(decode(&mut buf), Err(CodecError::Malformed(_))));
        assert!(buf.is_empty(), "the bad frame is consumed");
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        let big = StoredMessage {
            conv: ConvId(1),
            seq: 1,
            sender: "v".into(),
            cid: "c".into(),
            body: "x".repeat(MAX_FRAME),
            ts: 0,
        };
        let mut out = b"kept".to_vec();
        let msg = BridgeMsg::Persist {
            req: 1,
            messages: vec![big],
            events: vec![],
        };
        assert!(matches!(encode(&msg, &mut out), Err(CodecError::TooLarge(n)) if n > MAX_FRAME));
        assert_eq!(out, b"kept", "nothing half-written");
    }

    #[test]
    fn assists_are_bounded_and_round_trip() {
        let long = "汉".repeat(MAX_ASSIST_TEXT);
        let assist = Assist {
            reply: Some(long.clone()),
            draft: Some(long),
            labels: (0..40)
                .map(|i| (format!("k{i:02}"), "x".repeat(500)))
                .collect(),
            priority: Some(3),
            handoff: Some("asked for a human".into()),
            by: "kb".into(),
        }
        .bounded();
        assert!(assist.reply.as_ref().unwrap().len() <= MAX_ASSIST_TEXT);
        assert_eq!(assist.labels.len(), MAX_ASSIST_LABELS);
        assert!(assist.labels.values().all(|v| v.len() == MAX_LABEL_LEN));
        let msg = BridgeMsg::Assist {
            conv: ConvId(9),
            seq: 4,
            assist,
        };
        let mut wire = Vec::new();
        encode(&msg, &mut wire).unwrap();
        assert_eq!(decode(&mut wire).unwrap(), Some(msg));
        // A bridge without an AI layer, or an older welcome: the bot is off.
        let mut old = Vec::new();
        let text = br#"{"t":"welcome","version":3}"#;
        old.extend_from_slice(&(text.len() as u32).to_be_bytes());
        old.extend_from_slice(text);
        assert_eq!(
            decode(&mut old).unwrap(),
            Some(BridgeMsg::Welcome {
                version: 3,
                bot: BotMode::Off,
                disabled: Vec::new(),
                sites: Vec::new(),
            })
        );
    }

    #[test]
    fn json_lengths_are_exact() {
        for s in [
            "",
            "abc",
            "q\"b\\",
            "\u{1}\n\t\r\u{8}\u{c}\u{1f}\u{7f}",
            "héllo 😀",
        ] {
            assert_eq!(
                json_str_len(s),
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    /// Any text, with every character that JSON escapes likely.
    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('\u{1}'),
                Just('é'),
                Just('😀'),
                any::<char>()
            ],
            0..max,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn message() -> impl Strategy<Value = StoredMessage> {
        (
            any::<u64>(),
            any::<u64>(),
            text(64),
            text(64),
            text(400),
            any::<u64>(),
        )
            .prop_map(|(conv, seq, sender, cid, body, ts)| StoredMessage {
                conv: ConvId(conv),
                seq,
                sender,
                cid,
                body,
                ts,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The size bound is a bound, whatever the text.
        #[test]
        fn encoded_len_bounds_the_encoding(m in message()) {
            prop_assert!(serde_json::to_vec(&m).unwrap().len() <= m.encoded_len());
            prop_assert!(m.encoded_len() <= m.max_encoded_len());
        }

        /// A page cut with `fitting` always encodes within the frame limit, whatever the
        /// page budget (up to PAGE_BYTES) and the message sizes (up to MAX_MESSAGE_BYTES),
        /// and always makes progress.
        #[test]
        fn pages_always_fit_a_frame(
            sizes in proptest::collection::vec(0usize..=MAX_MESSAGE_BYTES, 1..6),
            budget in 0usize..=PAGE_BYTES,
            escapes in any::<bool>(),
        ) {
            // A body of the largest client frame a size allows: every byte a 6-byte escape
            // costs the client 6 bytes of its frame too.
            let messages: Vec<StoredMessage> = sizes.iter().enumerate().map(|(i, &n)| StoredMessage {
                conv: ConvId(u64::MAX),
                seq: u64::MAX - i as u64,
                sender: "a".repeat(64),
                cid: "\u{1}".repeat(10),
                body: if escapes { "\u{1}".repeat(n.saturating_sub(70) / 6) } else { "x".repeat(n.saturating_sub(70)) },
                ts: u64::MAX,
            }).collect();
            let take = fitting(&messages, budget);
            prop_assert!(take >= 1);
            let msg = BridgeMsg::HistoryIs {
                req: u64::MAX,
                conv: ConvId(u64::MAX),
                messages: messages[..take].to_vec(),
                more: true,
            };
            let mut out = Vec::new();
            prop_assert!(encode(&msg, &mut out).is_ok());
            prop_assert!(out.len() <= MAX_FRAME + 4);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = bytes;
            let _ = decode(&mut buf);
        }
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;

    #[test]
    fn relayed_messages_pass_through_untouched() {
        let msg = BridgeMsg::Relay {
            items: vec![Relayed {
                to: (7 << 16) | 1,
                from: 3 << 16,
                msg: r#"{"Home":{"x":[1,"a"]}}"#.into(),
            }],
        };
        let mut wire = Vec::new();
        encode(&msg, &mut wire).unwrap();
        let got = decode(&mut wire).unwrap().unwrap();
        assert_eq!(got, msg);
        let BridgeMsg::Relay { items } = got else {
            unreachable!()
        };
        assert_eq!(items[0].node(), 7);
    }
}
