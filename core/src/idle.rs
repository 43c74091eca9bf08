//! Idle deadlines for tens of thousands of connections with no timer per frame.
//!
//! A frame only stores "last seen" on its connection (one integer write). The wheel holds one
//! entry per connection at the second its next check is due; when that second passes, the
//! check compares the real idle time and either pings, closes, or re-files the connection.
//! A connection is touched by the wheel about twice per idle period, however busy it is.

use std::collections::BTreeMap;

/// What the wheel decided for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleVerdict {
    /// Still active: check again at this time (ms).
    Recheck(u64),
    /// Idle for half its deadline: send a ping, check again at the deadline.
    Ping(u64),
    /// Idle past its deadline: close it.
    Expire,
}

/// Decides from the last activity, the deadline and whether a ping was already sent.
pub fn verdict(now_ms: u64, last_seen_ms: u64, deadline_ms: u64, pinged: bool) -> IdleVerdict {
    let idle = now_ms.saturating_sub(last_seen_ms);
    let half = deadline_ms / 2;
    if idle >= deadline_ms {
        IdleVerdict::Expire
    } else if idle >= half {
        if pinged {
            IdleVerdict::Recheck(last_seen_ms + deadline_ms)
        } else {
            IdleVerdict::Ping(last_seen_ms + deadline_ms)
        }
    } else {
        IdleVerdict::Recheck(last_seen_ms + half)
    }
}

/// How finely due times are bucketed, in milliseconds. A check runs at most this late
/// (plus the caller's tick interval), so it stays well inside even a 2 s deadline.
pub const RESOLUTION_MS: u64 = 250;

/// Due times, bucketed by [`RESOLUTION_MS`], of keys `K` (connection handles).
#[derive(Debug)]
pub struct IdleWheel<K> {
    buckets: BTreeMap<u64, Vec<K>>,
}

impl<K> Default for IdleWheel<K> {
    fn default() -> Self {
        Self {
            buckets: BTreeMap::new(),
        }
    }
}

impl<K> IdleWheel<K> {
    /// Files `key` to be checked at `due_ms` (rounded up to the resolution).
    pub fn schedule(&mut self, key: K, due_ms: u64) {
        let bucket = due_ms.div_ceil(RESOLUTION_MS);
        self.buckets.entry(bucket).or_default().push(key);
    }

    /// Removes and returns every key due at or before `now_ms`.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<K> {
        let now_bucket = now_ms / RESOLUTION_MS;
        let mut due = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now_bucket {
                break;
            }
            due.extend(entry.remove());
        }
        due
    }

    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict(10_000, 9_000, 60_000, false),
            IdleVerdict::Recheck(39_000)
        );
        assert_eq!(
            verdict(40_000, 9_000, 60_000, false),
            IdleVerdict::Ping(69_000)
        );
        assert_eq!(
            verdict(40_000, 9_000, 60_000, true),
            IdleVerdict::Recheck(69_000)
        );
        assert_eq!(verdict(69_000, 9_000, 60_000, true), IdleVerdict::Expire);
        assert_eq!(verdict(69_000, 9_000, 60_000, false), IdleVerdict::Expire);
    }

    #[test]
    fn wheel_returns_due_keys_in_time_order_once() {
        let mut w = IdleWheel::default();
        w.schedule("b", 2_500);
        w.schedule("a", 1_000);
        w.schedule("c", 9_000);
        w.schedule("d", 2_600);
        assert!(w.take_due(999).is_empty());
        assert_eq!(w.take_due(1_000), vec!["a"]);
        assert_eq!(w.take_due(2_500), vec!["b"]);
        assert!(w.take_due(2_700).is_empty(), "2.6 s rounds up to 2.75 s");
        assert_eq!(w.take_due(5_000), vec!["d"]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.take_due(100_000), vec!["c"]);
        assert!(w.is_empty());
    }
}
