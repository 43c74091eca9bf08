//! What a shard's three roles share while they handle one input: the shard's place in the
//! cluster, the configuration, the time, the counters, and the mail they send each other.
//!
//! A role never calls another: it posts a [`ShardMsg`] with [`Shared::send`]. One for this
//! shard waits in `local` and is handled before the input returns (a function call, not a
//! channel); one for another shard waits in `outgoing` until the runtime takes it.

use crate::config::CoreConfig;
use crate::conn::Now;
use crate::messages::ShardMsg;
use crate::routing::{ClusterView, ShardId};
use bytes::Bytes;
use std::collections::VecDeque;
use switchboard_protocol::server::{encode, ServerFrame};
use switchboard_protocol::{ConvId, ErrorCode};

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
    /// Conversations the bot has (dispatcher shard only).
    pub with_bot: u64,
    /// Bot replies sent as messages (as a home shard).
    pub bot_replies: u64,
    /// Drafts sent to agents (as a home shard).
    pub drafts: u64,
    /// AI decisions dropped: the conversation was gone, closed or not in memory, or the
    /// store was too far behind for a bot reply.
    pub assists_dropped: u64,
    /// Conversations closed because nobody wrote in them for `conversation_idle_close`.
    pub idle_closed: u64,
    /// Conversations handed to another agent because theirs did not answer in time
    /// (dispatcher shard only).
    pub rerouted: u64,
    /// Conversations this shard lost to another node's home (fenced by the store).
    pub fenced: u64,
}

/// The state every role of one shard reads, counts into and sends through.
#[derive(Debug)]
pub(super) struct Shared {
    pub id: ShardId,
    /// The live nodes and where conversations and the dispatcher live.
    pub view: ClusterView,
    pub cfg: CoreConfig,
    /// The time of the input being handled.
    pub now: Now,
    pub stats: ShardStats,
    /// Messages this shard sent itself, handled before the current input returns.
    pub local: VecDeque<ShardMsg>,
    /// Messages for other shards, until the runtime takes them.
    pub outgoing: Vec<(ShardId, ShardMsg)>,
    /// The sites, as this shard's link to the bridge last heard.
    pub sites: crate::sites::Sites,
}

impl Shared {
    pub fn new(id: ShardId, view: ClusterView, cfg: CoreConfig) -> Self {
        Self {
            id,
            view,
            cfg,
            now: Now::default(),
            stats: ShardStats::default(),
            local: VecDeque::new(),
            outgoing: Vec::new(),
            sites: Default::default(),
        }
    }

    /// Queues a message for shard `to`: handled at once when it is this shard.
    pub fn send(&mut self, to: ShardId, msg: impl Into<ShardMsg>) {
        let msg = msg.into();
        if to == self.id {
            self.local.push_back(msg);
        } else {
            self.outgoing.push((to, msg));
        }
    }

    /// The home shard of `conv`.
    pub fn home(&self, conv: ConvId) -> ShardId {
        self.view.home(conv)
    }

    /// The dispatcher shard.
    pub fn dispatcher(&self) -> ShardId {
        self.view.dispatcher_shard()
    }
}

/// An encoded `error` frame.
pub(super) fn error_frame(code: ErrorCode, message: &str, cid: Option<&str>) -> Bytes {
    encode(&ServerFrame::Error {
        code: code.as_str().into(),
        message: message.into(),
        cid: cid.map(Into::into),
    })
}
