//! Rate-limits repeated identical warnings: a link that fails the same way many times a
//! second should say so once, then how many times it repeated, not fill the disk.
//!
//! Sans-IO: the caller passes the time and logs when told to.

use std::collections::HashMap;

/// How many distinct keys are remembered before the oldest memory is dropped.
const KEYS_MAX: usize = 1024;

/// Decides, per key, whether a warning is logged now.
#[derive(Debug)]
pub struct LogThrottle {
    every_ms: u64,
    /// key -> (when last logged, repeats suppressed since)
    seen: HashMap<String, (u64, u64)>,
}

impl LogThrottle {
    /// Logs each key at most once per `every_ms`.
    pub fn new(every_ms: u64) -> Self {
        Self {
            every_ms,
            seen: HashMap::new(),
        }
    }

    /// `Some(n)`: log now, noting the `n` identical warnings suppressed since the last one.
    /// `None`: stay quiet (counted).
    pub fn allow(&mut self, key: &str, now_ms: u64) -> Option<u64> {
        if let Some((last, suppressed)) = self.seen.get_mut(key) {
            if now_ms < *last + self.every_ms {
                *suppressed += 1;
                return None;
            }
            let n = *suppressed;
            *last = now_ms;
            *suppressed = 0;
            return Some(n);
        }
        if self.seen.len() >= KEYS_MAX {
            self.seen.clear();
        }
        self.seen.insert(key.to_string(), (now_ms, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_logged_once_per_period_with_their_count() {
        let mut t = LogThrottle::new(1000);
        assert_eq!(t.allow("a", 0), Some(0));
        assert_eq!(t.allow("a", 10), None);
        assert_eq!(t.allow("a", 999), None);
        assert_eq!(t.allow("b", 999), Some(0), "another warning is its own");
        assert_eq!(t.allow("a", 1000), Some(2));
        assert_eq!(t.allow("a", 1001), None);
    }
}
