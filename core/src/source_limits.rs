//! Per source address limits at accept, before any TLS or HTTP work: open connections,
//! unfinished handshakes (accepted, upgrade not yet done) and new connections per second.
//! One flooding address is refused cheaply while every other address is served.
//!
//! One [`SourceLimits`] per shard; the kernel spreads one address's connections over the
//! shards (SO_REUSEPORT hashes the whole 4-tuple), so each shard holds its share of the
//! configured totals. Time is a millisecond counter passed in, so tests need no clock.

use crate::ratelimit::TokenBucket;
use std::collections::HashMap;
use std::net::IpAddr;

/// The limits for one address, as this shard applies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_open: u32,
    pub max_unfinished: u32,
    /// New connections per second, sustained, and at once.
    pub rate_per_sec: f64,
    pub burst: f64,
}

impl Limits {
    /// A shard's share of gateway-wide limits over `shards` shards (at least 1 each).
    pub fn share(total: Limits, shards: u32) -> Limits {
        let n = shards.max(1);
        let part = |v: u32| v.div_ceil(n).max(1);
        Limits {
            max_open: part(total.max_open),
            max_unfinished: part(total.max_unfinished),
            rate_per_sec: (total.rate_per_sec / n as f64).max(1.0),
            burst: (total.burst / n as f64).max(1.0),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address has its most open connections.
    Open,
    /// The address has its most handshakes in progress.
    Unfinished,
    /// The address opens connections faster than allowed.
    Rate,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Unfinished => "unfinished",
            Self::Rate => "rate",
        }
    }
}

#[derive(Debug)]
struct Source {
    open: u32,
    unfinished: u32,
    bucket: TokenBucket,
    /// When it was last admitted or refused, for [`SourceLimits::sweep`].
    last_ms: u64,
}

/// Every address with connections (or a recent burst) on this shard.
#[derive(Debug)]
pub struct SourceLimits {
    limits: Limits,
    by_ip: HashMap<IpAddr, Source>,
}

impl SourceLimits {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            by_ip: HashMap::new(),
        }
    }

    /// A connection from `ip` was accepted: it may go on (and is counted open and
    /// unfinished), or is refused (and not counted).
    pub fn admit(&mut self, ip: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        let l = self.limits;
        let s = self.by_ip.entry(ip).or_insert_with(|| Source {
            open: 0,
            unfinished: 0,
            bucket: TokenBucket::new(l.burst, now_ms),
            last_ms: now_ms,
        });
        s.last_ms = now_ms;
        if s.open >= l.max_open {
            return Err(Refusal::Open);
        }
        if s.unfinished >= l.max_unfinished {
            return Err(Refusal::Unfinished);
        }
        if !s.bucket.try_take(now_ms, l.rate_per_sec, l.burst) {
            return Err(Refusal::Rate);
        }
        s.open += 1;
        s.unfinished += 1;
        Ok(())
    }

    /// An admitted connection from `ip` finished its handshake (upgraded, or answered).
    pub fn finished(&mut self, ip: IpAddr) {
        if let Some(s) = self.by_ip.get_mut(&ip) {
            s.unfinished = s.unfinished.saturating_sub(1);
        }
    }

    /// An admitted connection from `ip` closed; `finished`: whether [`Self::finished`] was
    /// called for it.
    pub fn closed(&mut self, ip: IpAddr, finished: bool) {
        if let Some(s) = self.by_ip.get_mut(&ip) {
            s.open = s.open.saturating_sub(1);
            if !finished {
                s.unfinished = s.unfinished.saturating_sub(1);
            }
        }
    }

    /// Forgets addresses with nothing open whose burst has had time to refill, so that the
    /// map holds only addresses that matter now. Called on a timer.
    pub fn sweep(&mut self, now_ms: u64) {
        let refill_ms = (self.limits.burst / self.limits.rate_per_sec * 1000.0) as u64;
        self.by_ip
            .retain(|_, s| s.open > 0 || now_ms.saturating_sub(s.last_ms) <= refill_ms);
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Open connections from `ip` on this shard.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.by_ip.get(&ip).map_or(0, |s| s.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    fn limits(open: u32, unfinished: u32, rate: f64, burst: f64) -> SourceLimits {
        SourceLimits::new(Limits {
            max_open: open,
            max_unfinished: unfinished,
            rate_per_sec: rate,
            burst,
        })
    }

    #[test]
    fn one_address_over_its_limits_leaves_others_alone() {
        let mut l = limits(3, 100, 1000.0, 1000.0);
        for _ in 0..3 {
            assert_eq!(l.admit(A, 0), Ok(()));
            l.finished(A);
        }
        assert_eq!(l.admit(A, 0), Err(Refusal::Open));
        assert_eq!(l.admit(B, 0), Ok(()));
        // One closes: one more may come.
        l.closed(A, true);
        assert_eq!(l.admit(A, 0), Ok(()));
        assert_eq!(l.open_from(A), 3);
    }

    #[test]
    fn handshakes_in_progress_are_capped_and_released_either_way() {
        let mut l = limits(100, 2, 1000.0, 1000.0);
        assert_eq!(l.admit(A, 0), Ok(()));
        assert_eq!(l.admit(A, 0), Ok(()));
        assert_eq!(l.admit(A, 0), Err(Refusal::Unfinished));
        // One finishes its handshake, one is dropped before it did.
        l.finished(A);
        assert_eq!(l.admit(A, 0), Ok(()));
        l.closed(A, false);
        assert_eq!(l.admit(A, 0), Ok(()));
        assert_eq!(l.admit(A, 0), Err(Refusal::Unfinished));
        assert_eq!(l.open_from(A), 3);
    }

    #[test]
    fn new_connections_per_second_burst_then_rate() {
        let mut l = limits(1000, 1000, 10.0, 5.0);
        let admitted = (0..20).filter(|_| l.admit(A, 0).is_ok()).count();
        assert_eq!(admitted, 5);
        assert_eq!(l.admit(A, 50), Err(Refusal::Rate));
        assert_eq!(l.admit(A, 100), Ok(()), "a token a tenth of a second later");
        // Refused connections are not counted open.
        assert_eq!(l.open_from(A), 6);
    }

    #[test]
    fn sweeping_keeps_what_is_open_or_still_refilling() {
        let mut l = limits(10, 10, 10.0, 5.0);
        l.admit(A, 0).unwrap();
        l.admit(B, 0).unwrap();
        l.closed(B, false);
        l.sweep(100);
        assert_eq!(l.len(), 2, "B's burst is still refilling");
        // 5 tokens at 10/s: refilled after half a second.
        l.sweep(600);
        assert_eq!(l.len(), 1);
        assert_eq!(l.open_from(A), 1);
        // A connect-and-close flood does not reset the rate by closing.
        for t in 0..5 {
            l.admit(B, 600 + t).unwrap();
            l.closed(B, false);
        }
        l.sweep(610);
        assert_eq!(l.admit(B, 610), Err(Refusal::Rate));
    }

    #[test]
    fn a_shards_share_of_the_limits() {
        let total = Limits {
            max_open: 5000,
            max_unfinished: 101,
            rate_per_sec: 200.0,
            burst: 400.0,
        };
        let part = Limits::share(total, 2);
        assert_eq!(
            (
                part.max_open,
                part.max_unfinished,
                part.rate_per_sec,
                part.burst
            ),
            (2500, 51, 100.0, 200.0)
        );
        assert_eq!(Limits::share(total, 0), total);
    }
}
