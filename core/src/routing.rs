//! Placement: pure functions from ids to shards.
//!
//! A conversation lives on its home shard while the cluster's membership stays the same,
//! so every shard can compute where to send a conversation's traffic without asking
//! anyone. On one node that is its whole life; in a cluster, a node joining or dying moves
//! the conversations whose rendezvous winner changed (docs/cluster.md).

use switchboard_protocol::ConvId;

/// A shard: its node in the high bits, its index on the node in the low ones ([`global`]).
pub type ShardId = u32;

/// The shard that runs agent assignment and the waiting queue. Assignment happens once per
/// conversation (not per message), so one owner keeps it simple and exact.
pub const DISPATCHER_SHARD: ShardId = 0;

/// The home shard of a conversation. Ids are random, but they are mixed again so that a
/// poorly random id source still spreads evenly.
pub fn home_shard(conv: ConvId, nr_shards: u32) -> ShardId {
    debug_assert!(nr_shards > 0);
    ((mix(conv.0) as u128 * nr_shards as u128) >> 64) as ShardId
}

/// The splitmix64 finaliser.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Shard ids name a shard in the whole cluster: the node's number in the high 16 bits, the
/// shard's index on its node in the low 16. On one node (no cluster) the node is 0, so a
/// shard id is the plain index.
pub const NODE_SHIFT: u32 = 16;
/// The most shards one node may run (the low bits of a [`ShardId`]).
pub const MAX_NODE_SHARDS: u32 = 1 << NODE_SHIFT;

/// A node's number in the cluster (chosen when it registers; 0 without a cluster).
pub type NodeNum = u16;

/// The shard id of shard `shard` of node `node`.
pub fn global(node: NodeNum, shard: u32) -> ShardId {
    debug_assert!(shard < MAX_NODE_SHARDS);
    ((node as u32) << NODE_SHIFT) | shard
}

/// The node a shard id belongs to.
pub fn node_of(id: ShardId) -> NodeNum {
    (id >> NODE_SHIFT) as NodeNum
}

/// A shard id's index on its node.
pub fn local_of(id: ShardId) -> u32 {
    id & (MAX_NODE_SHARDS - 1)
}

/// A live node as the membership in Redis shows it: its number and how many shards it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSlot {
    pub num: NodeNum,
    pub shards: u32,
}

/// Where everything lives, as this shard knows it: the live nodes, this one among them, and
/// the dispatcher's node. Conversations find their home node by rendezvous hashing over the
/// live nodes, so when one dies only its conversations move (to the others, evenly), and
/// every node that sees the same members agrees without asking anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub me: NodeNum,
    /// Live nodes, sorted by number; never empty (this node is always in it).
    pub nodes: Vec<NodeSlot>,
    /// The dispatcher's node: the live node with the lowest number.
    pub dispatcher: NodeNum,
}

impl ClusterView {
    /// Node `me` with `shards` shards, seeing no other: a node without a cluster (node 0),
    /// or one that has not heard of the others yet.
    pub fn alone(me: NodeNum, shards: u32) -> Self {
        Self::of(me, vec![NodeSlot { num: me, shards }])
    }

    /// The view of node `me` given the live `nodes`, which must include it (a node always
    /// counts itself alive, so it keeps serving its own conversations without Redis).
    pub fn of(me: NodeNum, mut nodes: Vec<NodeSlot>) -> Self {
        nodes.sort_by_key(|n| n.num);
        nodes.dedup_by_key(|n| n.num);
        assert!(
            nodes.iter().any(|n| n.num == me),
            "node {me} must be in its own view"
        );
        let dispatcher = nodes[0].num;
        Self {
            me,
            nodes,
            dispatcher,
        }
    }

    /// The home shard of `conv`: its node by rendezvous hashing, then its shard there.
    pub fn home(&self, conv: ConvId) -> ShardId {
        let node = if self.nodes.len() == 1 {
            self.nodes[0]
        } else {
            *self
                .nodes
                .iter()
                .max_by_key(|n| mix(conv.0 ^ (n.num as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .expect("a view is never empty")
        };
        global(node.num, home_shard(conv, node.shards))
    }

    /// The dispatcher shard: shard 0 of the dispatcher's node.
    pub fn dispatcher_shard(&self) -> ShardId {
        global(self.dispatcher, DISPATCHER_SHARD)
    }

    /// Every shard of every live node.
    pub fn all_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.nodes
            .iter()
            .flat_map(|n| (0..n.shards).map(move |s| global(n.num, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn home_is_stable_and_in_range(id: u64, n in 1u32..256) {
            let a = home_shard(ConvId(id), n);
            prop_assert!(a < n);
            prop_assert_eq!(a, home_shard(ConvId(id), n));
        }
    }

    #[test]
    fn a_dead_node_moves_only_its_own_conversations() {
        let slot = |num| NodeSlot { num, shards: 2 };
        let three = ClusterView::of(7, vec![slot(7), slot(9), slot(12)]);
        let two = ClusterView::of(7, vec![slot(7), slot(12)]);
        let (mut moved, mut on_nine) = (0, 0);
        for i in 0..30_000u64 {
            let (a, b) = (three.home(ConvId(i)), two.home(ConvId(i)));
            if node_of(a) == 9 {
                on_nine += 1;
                assert_ne!(node_of(b), 9);
            } else {
                assert_eq!(a, b, "conversation {i} moved off a live node");
            }
            moved += (a != b) as u32;
        }
        assert_eq!(moved, on_nine);
        assert!((9_000..11_000).contains(&on_nine), "{on_nine}");
        assert_eq!(three.dispatcher_shard(), global(7, 0));
        assert_eq!(three.all_shards().count(), 6);
    }

    #[test]
    fn one_node_ids_are_plain_indexes() {
        let v = ClusterView::alone(0, 4);
        for i in 0..1000u64 {
            assert_eq!(v.home(ConvId(i)), home_shard(ConvId(i), 4));
        }
        assert_eq!(v.dispatcher_shard(), 0);
        assert_eq!((node_of(global(3, 5)), local_of(global(3, 5))), (3, 5));
    }

    #[test]
    fn spreads_sequential_ids_evenly() {
        let n = 4;
        let mut counts = [0u32; 4];
        for i in 0..40_000u64 {
            counts[home_shard(ConvId(i), n) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
