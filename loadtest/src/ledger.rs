//! Accounting of messages across a run: which were acked, which were lost, which arrived
//! twice. Plain data structures, so the rules that decide "lost" and "duplicated" are tested
//! without sockets.
//!
//! A sender may resend a `cid` after a reconnect; the gateway answers a resend of a stored
//! message with the same `seq`, which is not a duplicate. A second `ack` for a `cid` with a
//! different `seq` is: the message was stored twice.

use std::collections::{BTreeSet, HashMap};

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
    pending: HashMap<String, u64>,
    acked: HashMap<String, u64>,
    pub duplicates: u64,
}

impl SenderLedger {
    /// A message sent (or resent) at `t_us`. A resend keeps the original send time.
    pub fn sent(&mut self, cid: &str, t_us: u64) {
        if !self.acked.contains_key(cid) {
            self.pending.entry(cid.to_string()).or_insert(t_us);
        }
    }

    pub fn ack(&mut self, cid: &str, seq: u64, now_us: u64) -> Ack {
        if let Some(t0) = self.pending.remove(cid) {
            self.acked.insert(cid.to_string(), seq);
            return Ack::First {
                latency_us: now_us.saturating_sub(t0),
            };
        }
        match self.acked.get(cid) {
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
        self.acked.len() as u64
    }

    /// Sent and never acked: lost, once the run's drain time is over.
    pub fn lost(&self) -> u64 {
        self.pending.len() as u64
    }
}

/// What one receiver saw, per conversation.
#[derive(Debug, Default)]
pub struct ReceiverLedger {
    seen: HashMap<String, BTreeSet<u64>>,
    pub duplicates: u64,
}

impl ReceiverLedger {
    /// A delivered message; false when this (conv, seq) was delivered before.
    pub fn delivered(&mut self, conv: &str, seq: u64) -> bool {
        let new = self.seen.entry(conv.to_string()).or_default().insert(seq);
        if !new {
            self.duplicates += 1;
        }
        new
    }

    pub fn count(&self) -> u64 {
        self.seen.values().map(|s| s.len() as u64).sum()
    }

    /// The newest seq delivered in `conv` (0: none): where to resume it from.
    pub fn last(&self, conv: &str) -> u64 {
        self.seen
            .get(conv)
            .and_then(|s| s.last().copied())
            .unwrap_or(0)
    }

    /// Seqs missing between the first and last seen of each conversation: messages this
    /// receiver should have had. Meaningful when it receives every message of its
    /// conversations (no replies of its own interleaved).
    pub fn gaps(&self) -> u64 {
        self.seen
            .values()
            .map(|s| match (s.first(), s.last()) {
                (Some(a), Some(b)) => b - a + 1 - s.len() as u64,
                _ => 0,
            })
            .sum()
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
    }
}
