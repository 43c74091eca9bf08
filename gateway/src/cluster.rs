//! The gateway's side of a cluster (docs/cluster.md): what the bridge says of the live
//! nodes becomes the core's [`ClusterView`], messages from other nodes go to the core as
//! shard messages, and messages for other nodes go to the bridge in `relay` frames.
//! Membership and the Redis traffic are the bridge's; everything here is one shard's.

use crate::shard_ctx::ShardCtx;
use switchboard_core::routing::{ClusterView, NodeSlot};
use switchboard_core::{Now, ShardMsg};
use switchboard_protocol::bridge::{encode, BridgeMsg, ClusterNode, Relayed};

/// Relayed messages per `relay` frame, at most (frames stay far under the link's limit).
const RELAYS_PER_FRAME: usize = 4096;

/// The bridge says which nodes are live, and whether Redis answers.
pub fn view_changed(ctx: &ShardCtx, nodes: &[ClusterNode], redis: bool, now: Now) {
    ctx.cluster_redis.set(Some(redis));
    {
        let m = ctx.metrics.borrow();
        m.cluster_redis_up.set(if redis { 1.0 } else { 0.0 });
        m.cluster_nodes.set(nodes.len() as f64);
    }
    let slots: Vec<NodeSlot> = nodes
        .iter()
        .map(|n| NodeSlot {
            num: n.num,
            shards: n.shards,
        })
        .chain(std::iter::once(NodeSlot {
            num: ctx.node,
            shards: ctx.nr_shards,
        }))
        .collect();
    let view = ClusterView::of(ctx.node, slots);
    if *ctx.shard.borrow().view() != view {
        let nodes: Vec<u16> = view.nodes.iter().map(|n| n.num).collect();
        tracing::info!(
            shard = ctx.id,
            ?nodes,
            dispatcher = view.dispatcher,
            "cluster membership changed"
        );
    }
    ctx.with_shard(|s| s.set_view(view, now));
}

/// Messages from shards of other nodes.
pub fn relayed(ctx: &ShardCtx, items: Vec<Relayed>, now: Now) {
    ctx.with_shard(|s| {
        for r in items {
            match serde_json::from_str::<ShardMsg>(&r.msg) {
                Ok(msg) => s.on_shard_msg(r.from, msg, now),
                Err(e) => {
                    tracing::warn!(error = %e, from = r.from, "unreadable relayed message; dropped")
                }
            }
        }
    });
}

/// Writes the messages waiting for other nodes to the link.
pub fn write_relays(ctx: &ShardCtx, out: &mut Vec<u8>) {
    let waiting = std::mem::take(&mut *ctx.relay_out.borrow_mut());
    let mut items = waiting.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<Relayed> = items.by_ref().take(RELAYS_PER_FRAME).collect();
        let n = chunk.len();
        if let Err(e) = encode(&BridgeMsg::Relay { items: chunk }, out) {
            tracing::error!(error = %e, dropped = n, "relay frame too large; dropped");
        }
    }
}
