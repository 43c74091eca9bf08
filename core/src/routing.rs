//! Placement: pure functions from ids to shards.
//!
//! A conversation lives on its home shard for its whole life, so every shard can compute
//! where to send a conversation's traffic without asking anyone.

use switchboard_protocol::ConvId;

/// Index of a shard, `0..nr_shards`.
pub type ShardId = u32;

/// The shard that runs agent assignment and the waiting queue. Assignment happens once per
/// conversation (not per message), so one owner keeps it simple and exact.
pub const DISPATCHER_SHARD: ShardId = 0;

/// The home shard of a conversation. Ids are random, but they are mixed again so that a
/// poorly random id source still spreads evenly.
pub fn home_shard(conv: ConvId, nr_shards: u32) -> ShardId {
    debug_assert!(nr_shards > 0);
    let mut x = conv.0;
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    ((x as u128 * nr_shards as u128) >> 64) as ShardId
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
