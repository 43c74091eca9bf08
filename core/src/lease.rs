//! Seq leases: why a seq, once seen by anyone, always names the same message.
//!
//! A home shard relays a message before the store has it (that keeps relay fast), so after a
//! crash the store may not know the highest seq anyone saw. A lease is the answer: the home
//! shard hands out seqs only up to a bound the store has already made durable, and a
//! conversation reloaded after a crash starts above its lease (the bridge takes a fresh one
//! in the same statement that reads it). The lease is asked again when half of it is used,
//! in the same group commit as messages, so it costs one row update per `len / 2` messages
//! and never a wait while the store keeps up.
//!
//! A new conversation's first lease is written with its opening event: until that commits
//! the store does not know the conversation at all, so none of its seqs can be reused. The
//! store keeps leases in a table of their own, only ever raised, so batches may commit in
//! any order.

/// One conversation's lease, on its home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqLease {
    /// Seqs up to this one may be handed out (durable, or in the opening batch).
    upto: u64,
    /// An extension asked and not settled yet.
    asked: Option<u64>,
    /// Handed back (the gateway is stopping): no seq is handed out any more.
    released: bool,
    /// The lease's epoch in the store when this home took it (0: it opened the
    /// conversation); extensions carry it, and the store refuses them once another home
    /// has loaded the conversation (a higher epoch).
    epoch: u64,
}

impl SeqLease {
    /// No store: every seq may be used.
    pub fn unlimited() -> Self {
        Self {
            upto: u64::MAX,
            asked: None,
            released: false,
            epoch: 0,
        }
    }

    /// A new conversation's: `len` seqs, written with its opening event. Usable at once:
    /// until that event is stored the conversation does not exist in the store, so none of
    /// its seqs can ever be handed out again. Extensions may be asked at once too: leases
    /// are kept apart from conversations, so one that commits first still counts.
    pub fn opened(len: u64) -> Self {
        Self {
            upto: len,
            asked: None,
            released: false,
            epoch: 0,
        }
    }

    /// A conversation loaded from the store, which leased up to `upto` for it in `epoch`.
    pub fn restored(upto: u64, epoch: u64) -> Self {
        Self {
            upto,
            asked: None,
            released: false,
            epoch,
        }
    }

    /// The epoch its extensions carry.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether `seq` may be handed out now.
    pub fn allows(&self, seq: u64) -> bool {
        seq <= self.upto
    }

    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// With `head` the newest seq handed out: the extension to write now (up to the value
    /// returned), when half the lease is used and none is asked already.
    pub fn wanted(&mut self, head: u64, len: u64) -> Option<u64> {
        if self.upto == u64::MAX || self.released || self.asked.is_some() {
            return None;
        }
        if head + len / 2 < self.upto {
            return None;
        }
        let upto = head + len;
        self.asked = Some(upto);
        Some(upto)
    }

    /// Hands the lease back (a clean stop): with `head` the newest seq handed out, nothing
    /// above it was shown, so the store may bring the lease down to it and the next start
    /// goes on at `head + 1`. From now on no seq is handed out. `None`: nothing to hand
    /// back (no store).
    /// Also gives the most this lease may hold in the store (an extension in flight
    /// included): the store lowers it only from at most that.
    pub fn release(&mut self, head: u64) -> Option<(u64, u64)> {
        if self.upto == u64::MAX {
            return None;
        }
        let held = self.upto.max(self.asked.unwrap_or(0));
        self.upto = head;
        self.released = true;
        Some((head, held))
    }

    /// The store answered the request that wrote a lease up to `upto`.
    pub fn settled(&mut self, upto: u64, ok: bool) {
        if ok && !self.released {
            self.upto = self.upto.max(upto);
        }
        if self.asked.is_some_and(|a| a <= upto) {
            self.asked = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_extended_at_half_once_at_a_time_and_only_once_durable() {
        let mut l = SeqLease::opened(10);
        assert!(l.allows(10) && !l.allows(11));
        assert_eq!(l.wanted(4, 10), None, "less than half used");
        assert_eq!(l.wanted(5, 10), Some(15));
        assert_eq!(l.wanted(9, 10), None, "one at a time");
        assert!(!l.allows(11), "usable only once stored");
        l.settled(15, true);
        assert!(l.allows(15) && !l.allows(16));
        // A failed write is asked again later; nothing becomes usable.
        assert_eq!(l.wanted(12, 10), Some(22));
        l.settled(22, false);
        assert!(!l.allows(16));
        assert_eq!(l.wanted(13, 10), Some(23));
    }

    #[test]
    fn a_released_lease_hands_out_nothing_more() {
        let mut l = SeqLease::restored(100, 0);
        assert_eq!(l.wanted(60, 80), Some(140));
        assert_eq!(
            l.release(60),
            Some((60, 140)),
            "what it may hold: the extension asked"
        );
        assert!(!l.allows(61));
        l.settled(140, true);
        assert!(
            !l.allows(61),
            "an extension landing after the release changes nothing"
        );
        assert_eq!(l.wanted(60, 80), None);
        assert_eq!(SeqLease::unlimited().release(5), None);
    }

    #[test]
    fn without_a_store_there_is_no_bound() {
        let mut l = SeqLease::unlimited();
        assert!(l.allows(u64::MAX));
        assert_eq!(l.wanted(u64::MAX - 1, 10), None);
    }
}
