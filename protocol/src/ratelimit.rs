//! A token bucket: `rate` per second sustained, `burst` at once (a gateway connection's
//! frames, a source address's new connections, an API caller's requests).
//! Time is a millisecond counter passed in, so tests need no clock.

#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f32,
    last_ms: u64,
}

impl TokenBucket {
    pub fn new(burst: f64, now_ms: u64) -> Self {
        Self {
            tokens: burst as f32,
            last_ms: now_ms,
        }
    }

    /// Whether the bucket has refilled to `burst` by `now_ms`: nothing remembered matters.
    pub fn is_full(&self, now_ms: u64, rate_per_sec: f64, burst: f64) -> bool {
        let refill = now_ms.saturating_sub(self.last_ms) as f64 * rate_per_sec / 1000.0;
        self.tokens as f64 + refill >= burst
    }

    /// Takes `n` tokens at once, or none when fewer are left.
    #[inline]
    pub fn try_take_n(&mut self, now_ms: u64, rate_per_sec: f64, burst: f64, n: u32) -> bool {
        self.refill(now_ms, rate_per_sec, burst);
        if self.tokens >= n as f32 {
            self.tokens -= n as f32;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now_ms: u64, rate_per_sec: f64, burst: f64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            let refill = elapsed as f64 * rate_per_sec / 1000.0;
            self.tokens = (self.tokens as f64 + refill).min(burst) as f32;
            self.last_ms = now_ms;
        }
    }

    /// Takes one token; false when the bucket is empty (the frame must be refused).
    #[inline]
    pub fn try_take(&mut self, now_ms: u64, rate_per_sec: f64, burst: f64) -> bool {
        self.try_take_n(now_ms, rate_per_sec, burst, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(5.0, 0);
        let taken = (0..10).filter(|_| b.try_take(0, 10.0, 5.0)).count();
        assert_eq!(taken, 5);
        assert!(!b.try_take(50, 10.0, 5.0), "half a token after 50 ms");
        assert!(b.try_take(100, 10.0, 5.0), "one token after 100 ms");
        assert!(!b.try_take(100, 10.0, 5.0));
        assert!(!b.is_full(100, 10.0, 5.0));
        assert!(b.is_full(600, 10.0, 5.0));
        // A long pause refills only up to the burst.
        let taken = (0..20).filter(|_| b.try_take(60_000, 10.0, 5.0)).count();
        assert_eq!(taken, 5);
    }

    proptest! {
        #[test]
        fn never_exceeds_rate_times_time_plus_burst(steps in proptest::collection::vec(0u64..200, 1..300)) {
            let (rate, burst) = (20.0, 10.0);
            let mut b = TokenBucket::new(burst, 0);
            let mut now = 0;
            let mut taken = 0u64;
            for s in steps {
                now += s;
                if b.try_take(now, rate, burst) { taken += 1; }
            }
            prop_assert!(taken as f64 <= burst + rate * now as f64 / 1000.0 + 1.0);
        }
    }
}
