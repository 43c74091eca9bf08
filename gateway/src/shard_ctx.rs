//! What the tasks of one shard share at run time ([`ShardCtx`]): the core's state, the
//! shard's outgoing mesh traffic, its metrics and its wake-ups. A leaf of the runtime: the
//! connection tasks, the bridge link and the runtime's own tasks all use it, and it uses
//! none of them.
//!
//! Threading model: one per shard, shared by that shard's tasks through `Rc`; the core state
//! sits in a `RefCell` that is borrowed only for one synchronous call into the core, never
//! across an `.await`.

use crate::config::Config;
use crate::flush_gate::FlushGate;
use crate::metrics::ShardMetrics;
use crate::notify::Notify;
use glommio::TaskQueueHandle;
use metrics_exporter_prometheus::PrometheusHandle;
use std::cell::{Cell, RefCell};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use switchboard_core::routing::{local_of, node_of};
use switchboard_core::{Now, Shard, ShardId, ShardMsg};
use switchboard_protocol::token::TokenSigner;
use tungstenite::protocol::WebSocketConfig;

/// What crosses the mesh: a batch of messages from one shard to another.
pub type Batch = Vec<ShardMsg>;

/// Messages waiting for one peer above this many make connections on this shard pause
/// reading, so backpressure lands on clients, never inside the mesh.
const CONGESTION_LIMIT: usize = 64 * 1024;

/// Messages for other nodes one shard keeps while its bridge link is down, at most.
const RELAY_WAITING_MAX: usize = 100_000;

/// State shared by the tasks of one shard.
pub struct ShardCtx {
    /// This shard's index on its node.
    pub id: u32,
    /// This node's number in its cluster (0: no cluster), and its shard count.
    pub node: u16,
    pub nr_shards: u32,
    /// Messages for shards of other nodes, waiting for the bridge link (which sends them
    /// on through Redis).
    pub(crate) relay_out:
        RefCell<std::collections::VecDeque<switchboard_protocol::bridge::Relayed>>,
    /// Whether the bridge says Redis answers (`None`: no cluster, or not said yet).
    pub cluster_redis: Cell<Option<bool>>,
    /// The core state machine; borrowed only within synchronous calls.
    pub shard: RefCell<Shard>,
    pub config: Config,
    pub signer: TokenSigner,
    pub ws_config: WebSocketConfig,
    pub metrics: RefCell<ShardMetrics>,
    pub prometheus: PrometheusHandle,
    /// Set when SIGTERM arrives: stop accepting, close connections with 1001.
    pub stopping: Cell<bool>,
    pub(crate) stop: Notify,
    /// Outgoing messages per peer, waiting for that peer's sender task.
    pub(crate) pending: Vec<RefCell<Batch>>,
    pub(crate) wake_sender: Vec<Notify>,
    /// Connections waiting for the mesh to drain.
    pub(crate) congestion_waiters: RefCell<Vec<std::task::Waker>>,
    pub(crate) epoch: Instant,
    /// Latency-sensitive work: connections and relaying.
    pub relay_queue: TaskQueueHandle,
    /// Wakes the bridge link when the core has requests for the bridge.
    pub bridge_wake: Notify,
    /// Connections' writes of one turn, sent together.
    pub flush_gate: FlushGate,
    /// Per source address: open connections, handshakes, new connections per second.
    pub sources: RefCell<switchboard_core::source_limits::SourceLimits>,
}

/// An admitted connection's place in its source's counts: the handshake is finished with
/// [`SourceTicket::finish`], and the connection counted closed when the ticket is dropped.
pub struct SourceTicket {
    ctx: std::rc::Rc<ShardCtx>,
    ip: std::net::IpAddr,
    finished: bool,
}

impl SourceTicket {
    pub fn new(ctx: std::rc::Rc<ShardCtx>, ip: std::net::IpAddr) -> Self {
        Self {
            ctx,
            ip,
            finished: false,
        }
    }

    /// The handshake is over (the request head is in): no longer counted unfinished.
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.ctx.sources.borrow_mut().finished(self.ip);
        }
    }
}

impl Drop for SourceTicket {
    fn drop(&mut self) {
        self.ctx.sources.borrow_mut().closed(self.ip, self.finished);
    }
}

impl ShardCtx {
    pub fn now(&self) -> Now {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Now {
            mono_ms: self.epoch.elapsed().as_millis() as u64 + 1,
            unix_ms,
        }
    }

    /// Runs `f` on the shard state, then hands its messages for other shards to the mesh.
    pub fn with_shard<R>(&self, f: impl FnOnce(&mut Shard) -> R) -> R {
        let mut shard = self.shard.borrow_mut();
        let r = f(&mut shard);
        if shard.has_bridge_requests() {
            self.bridge_wake.notify();
        }
        if shard.has_outgoing() {
            let from = shard.id();
            for (to, msg) in shard.take_outgoing() {
                if node_of(to) == self.node {
                    let to = local_of(to) as usize;
                    self.pending[to].borrow_mut().push(msg);
                    self.wake_sender[to].notify();
                } else {
                    self.relay(from, to, &msg);
                }
            }
        }
        r
    }

    /// A message for a shard of another node: to the bridge link, as JSON.
    fn relay(&self, from: ShardId, to: ShardId, msg: &ShardMsg) {
        match serde_json::to_string(msg) {
            Ok(msg) => {
                let r = switchboard_protocol::bridge::Relayed { to, from, msg };
                let mut out = self.relay_out.borrow_mut();
                if out.len() >= RELAY_WAITING_MAX {
                    // The bridge has been away long: the oldest go (their clients resend
                    // what was not acked when they reconnect).
                    out.pop_front();
                    metrics::counter!("chat_cluster_relay_dropped_total").increment(1);
                }
                out.push_back(r);
                self.bridge_wake.notify();
            }
            Err(e) => tracing::error!(error = %e, "a shard message did not encode; dropped"),
        }
    }

    pub(crate) fn pending_total(&self) -> usize {
        self.pending.iter().map(|p| p.borrow().len()).sum()
    }

    /// Resolves when the mesh is not congested (at once, normally).
    pub async fn uncongested(&self) {
        std::future::poll_fn(|cx| {
            if self
                .pending
                .iter()
                .all(|p| p.borrow().len() < CONGESTION_LIMIT)
            {
                std::task::Poll::Ready(())
            } else {
                self.congestion_waiters
                    .borrow_mut()
                    .push(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }

    pub(crate) fn wake_congested(&self) {
        let waiters = std::mem::take(&mut *self.congestion_waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}
