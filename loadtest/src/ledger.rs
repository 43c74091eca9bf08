//! Accounting of messages across a run: which were acked, which were lost, which arrived
//! twice. Plain data structures, so the rules that decide "lost" and "duplicated" are tested
//! without sockets.
//!
//! A sender may resend a `cid` after a reconnect; the gateway answers a resend of a stored
//! message with the same `seq`, which is not a duplicate. A second `ack` for a `cid` with a
//! different `seq` is: the message was stored twice.
//!
//! Memory stays flat over a long run: a sender keeps what is in flight and its most recent
//! acks (a second ack follows the first closely: both sends were in flight together), a
//! receiver keeps each conversation's delivered seqs as ranges.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Acked cids a sender remembers, to tell a repeat ack from a duplicate.
const RECENT_ACKS: usize = 4096;

/// What an `ack` meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The first ack of a sent message, after this many microseconds.
    First { latency_us: u64 },
    /// Another ack with the same seq (a resend recognised by the gateway).
    Repeat,
    /// Another ack with a different seq: stored twice.
    Duplicate,
    /// An ack for a cid this sender never sent.
    Unknown,
}

/// One sender's messages.
#[derive(Debug, Default)]
pub struct SenderLedger {
    /// Sent, not acked yet: cid -> first send time.
    pending: HashMap<String, u64>,
    /// The newest `RECENT_ACKS` acked cids -> their seq, and their order.
    recent: HashMap<String, u64>,
    recent_order: VecDeque<String>,
    acked: u64,
    pub duplicates: u64,
}

impl SenderLedger {
    /// A message sent (or resent) at `t_us`. A resend keeps the original send time.
    pub fn sent(&mut self, cid: &str, t_us: u64) {
        if !self.recent.contains_key(cid) {
            self.pending.entry(cid.to_string()).or_insert(t_us);
        }
    }

    pub fn ack(&mut self, cid: &str, seq: u64, now_us: u64) -> Ack {
        if let Some((cid, t0)) = self.pending.remove_entry(cid) {
            self.acked += 1;
            self.recent.insert(cid.clone(), seq);
            self.recent_order.push_back(cid);
            if self.recent_order.len() > RECENT_ACKS {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
            return Ack::First {
                latency_us: now_us.saturating_sub(t0),
            };
        }
        match self.recent.get(cid) {
            Some(&s) if s == seq => Ack::Repeat,
            Some(_) => {
                self.duplicates += 1;
                Ack::Duplicate
            }
            None => Ack::Unknown,
        }
    }

    /// Sent and not acked (what a reconnecting client resends), oldest first.
    pub fn unacked(&self) -> Vec<String> {
        let mut v: Vec<(&String, &u64)> = self.pending.iter().collect();
        v.sort_by_key(|(c, t)| (**t, (*c).clone()));
        v.into_iter().map(|(c, _)| c.clone()).collect()
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Sent and never acked: lost, once the run's drain time is over.
    pub fn lost(&self) -> u64 {
        self.pending.len() as u64
    }
}

/// What one receiver saw, per conversation.
#[derive(Debug, Default)]
pub struct ReceiverLedger {
    seen: HashMap<String, SeqRanges>,
    pub duplicates: u64,
}

impl ReceiverLedger {
    /// A delivered message; false when this (conv, seq) was delivered before.
    pub fn delivered(&mut self, conv: &str, seq: u64) -> bool {
        let new = match self.seen.get_mut(conv) {
            Some(s) => s.insert(seq),
            None => self.seen.entry(conv.to_string()).or_default().insert(seq),
        };
        if !new {
            self.duplicates += 1;
        }
        new
    }

    pub fn count(&self) -> u64 {
        self.seen.values().map(SeqRanges::len).sum()
    }

    /// The newest seq delivered in `conv` (0: none): where to resume it from.
    pub fn last(&self, conv: &str) -> u64 {
        self.seen.get(conv).and_then(SeqRanges::last).unwrap_or(0)
    }

    /// Seqs missing between the first and last seen of each conversation: messages this
    /// receiver should have had. Meaningful when it receives every message of its
    /// conversations (no replies of its own interleaved).
    pub fn gaps(&self) -> u64 {
        self.seen.values().map(SeqRanges::holes).sum()
    }
}

/// A set of seqs as disjoint, non-adjacent inclusive ranges (start -> end): a
/// conversation delivered in order is one entry however long it gets.
#[derive(Debug, Default)]
struct SeqRanges(BTreeMap<u64, u64>);

impl SeqRanges {
    /// Adds `seq`; false if it was there.
    fn insert(&mut self, seq: u64) -> bool {
        let before = self.0.range(..=seq).next_back().map(|(s, e)| (*s, *e));
        if let Some((_, end)) = before {
            if seq <= end {
                return false;
            }
        }
        let joins_before = before.filter(|(_, end)| *end + 1 == seq).map(|(s, _)| s);
        let after_end = self.0.get(&(seq + 1)).copied();
        if after_end.is_some() {
            self.0.remove(&(seq + 1));
        }
        let start = joins_before.unwrap_or(seq);
        self.0.insert(start, after_end.unwrap_or(seq));
        true
    }

    fn len(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s + 1).sum()
    }

    fn last(&self) -> Option<u64> {
        self.0.values().next_back().copied()
    }

    /// Seqs missing between the first and the last.
    fn holes(&self) -> u64 {
        match (self.0.keys().next(), self.last()) {
            (Some(first), Some(last)) => last - first + 1 - self.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_resends_and_duplicates() {
        let mut l = SenderLedger::default();
        l.sent("a", 100);
        l.sent("b", 200);
        assert_eq!(l.ack("a", 1, 350), Ack::First { latency_us: 250 });
        // A reconnect: "b" is resent (keeps its first send time), "a" resent too.
        assert_eq!(l.unacked(), ["b"]);
        l.sent("b", 900);
        l.sent("a", 900);
        assert_eq!(l.ack("a", 1, 1000), Ack::Repeat);
        assert_eq!(l.ack("b", 2, 1000), Ack::First { latency_us: 800 });
        assert_eq!(l.ack("b", 3, 1100), Ack::Duplicate);
        assert_eq!(l.ack("zzz", 9, 1100), Ack::Unknown);
        assert_eq!((l.acked(), l.lost(), l.duplicates), (2, 0, 1));
        l.sent("c", 2000);
        assert_eq!(l.lost(), 1);
    }

    #[test]
    fn receivers_count_duplicates_and_gaps() {
        let mut r = ReceiverLedger::default();
        for s in [1, 2, 3, 5, 6] {
            assert!(r.delivered("c1", s));
        }
        assert!(!r.delivered("c1", 3));
        assert!(r.delivered("c2", 10));
        assert_eq!((r.count(), r.duplicates, r.gaps()), (6, 1, 1));
        // The hole fills; a late, out-of-order seq joins both neighbours.
        assert!(r.delivered("c1", 4));
        assert!(!r.delivered("c1", 4));
        assert_eq!((r.count(), r.gaps(), r.last("c1")), (7, 0, 6));
        assert_eq!(r.last("c3"), 0);
    }

    #[test]
    fn seq_ranges_match_a_plain_set_on_random_input() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut ranges = SeqRanges::default();
            let mut plain = std::collections::BTreeSet::new();
            for _ in 0..60 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let seq = 1 + rng % 40;
                assert_eq!(
                    ranges.insert(seq),
                    plain.insert(seq),
                    "{seq} into {ranges:?}"
                );
                assert_eq!(ranges.len(), plain.len() as u64);
                assert_eq!(ranges.last(), plain.last().copied());
                let holes = match (plain.first(), plain.last()) {
                    (Some(a), Some(b)) => b - a + 1 - plain.len() as u64,
                    _ => 0,
                };
                assert_eq!(ranges.holes(), holes);
                // Ranges stay disjoint and never touch.
                let v: Vec<(u64, u64)> = ranges.0.iter().map(|(s, e)| (*s, *e)).collect();
                assert!(v.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{v:?}");
            }
        }
    }

    #[test]
    fn a_long_run_keeps_a_bounded_memory_of_acks() {
        let mut l = SenderLedger::default();
        for n in 0..100_000u64 {
            let cid = n.to_string();
            l.sent(&cid, n);
            assert!(matches!(l.ack(&cid, n + 1, n + 5), Ack::First { .. }));
        }
        assert_eq!((l.acked(), l.lost()), (100_000, 0));
        assert!(l.recent.len() <= RECENT_ACKS && l.recent_order.len() <= RECENT_ACKS);
        // A recent cid acked again with another seq is still caught.
        assert_eq!(l.ack("99999", 7, 0), Ack::Duplicate);
        let mut r = ReceiverLedger::default();
        for seq in 1..=100_000 {
            r.delivered("c", seq);
        }
        assert_eq!((r.count(), r.seen["c"].0.len()), (100_000, 1));
    }
}
