//! Waiting with a deadline instead of sleeping a fixed time: poll something a test can read
//! (a metric, a file, a count, a process's state) until it is what the test expects.
//!
//! Two shapes, each blocking and async (the async ones sleep with `tokio::time`, so other
//! tasks of the test's runtime go on meanwhile):
//! - [`eventually`]: the value once `done` holds; at the deadline it panics naming what was
//!   awaited and the last value seen.
//! - [`settled`]: the same, but at the deadline it returns the last value seen, for when the
//!   assertions that follow say better than a timeout what is wrong.
//!
//! A sleep that lets time pass on purpose (a deadline to expire, or a moment to show that
//! something does *not* happen) is not a wait and stays a sleep, with a comment saying so.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long a test waits for anything it expects: a frame, a close, a metric, an exit.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a process under test may take to start (it may run migrations, and the
/// machine is often busy building).
pub const STARTUP: Duration = Duration::from_secs(60);

/// The pause between two reads.
pub const POLL: Duration = Duration::from_millis(50);

/// Reads until `done(&value)`, every [`POLL`], and returns that value; panics at `limit`
/// with `what` and the last value read.
pub fn eventually<T: Debug>(
    what: &str,
    limit: Duration,
    read: impl FnMut() -> T,
    done: impl FnMut(&T) -> bool,
) -> T {
    match poll(limit, read, done) {
        Ok(v) => v,
        Err(last) => panic!("{what}: not within {limit:?}; last seen: {last:?}"),
    }
}

/// Reads until `done(&value)`, every [`POLL`], and returns that value, or the last value
/// read once `limit` has passed.
pub fn settled<T>(limit: Duration, read: impl FnMut() -> T, done: impl FnMut(&T) -> bool) -> T {
    poll(limit, read, done).unwrap_or_else(|last| last)
}

/// [`eventually`] for async tests: sleeps with tokio between reads.
pub async fn eventually_async<T: Debug>(
    what: &str,
    limit: Duration,
    read: impl FnMut() -> T,
    done: impl FnMut(&T) -> bool,
) -> T {
    match poll_async(limit, read, done).await {
        Ok(v) => v,
        Err(last) => panic!("{what}: not within {limit:?}; last seen: {last:?}"),
    }
}

/// [`settled`] for async tests: sleeps with tokio between reads.
pub async fn settled_async<T>(
    limit: Duration,
    read: impl FnMut() -> T,
    done: impl FnMut(&T) -> bool,
) -> T {
    poll_async(limit, read, done)
        .await
        .unwrap_or_else(|last| last)
}

/// `Ok(value)` once `done`, `Err(last value)` at the deadline; reads at least once.
fn poll<T>(
    limit: Duration,
    mut read: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + limit;
    loop {
        let v = read();
        if done(&v) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(v);
        }
        std::thread::sleep(POLL);
    }
}

async fn poll_async<T>(
    limit: Duration,
    mut read: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + limit;
    loop {
        let v = read();
        if done(&v) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(v);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventually_returns_the_first_value_that_is_done() {
        let mut n = 0;
        let v = eventually(
            "n to reach 3",
            TIMEOUT,
            || {
                n += 1;
                n
            },
            |n| *n >= 3,
        );
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "the answer: not within 100ms; last seen: 41")]
    fn eventually_panics_with_what_and_the_last_value() {
        eventually(
            "the answer",
            Duration::from_millis(100),
            || 41,
            |v| *v == 42,
        );
    }

    #[test]
    fn settled_returns_the_last_value_at_the_deadline() {
        let start = Instant::now();
        let mut n = 0;
        let v = settled(
            Duration::from_millis(120),
            || {
                n += 1;
                n
            },
            |_| false,
        );
        assert!(v >= 2, "read more than once: {v}");
        assert!(start.elapsed() >= Duration::from_millis(120));
    }

    #[tokio::test]
    async fn the_async_forms_wait_the_same_way() {
        let start = Instant::now();
        let v = eventually_async(
            "time to pass",
            TIMEOUT,
            || start.elapsed(),
            |e| *e >= Duration::from_millis(100),
        )
        .await;
        assert!(v >= Duration::from_millis(100));
        assert_eq!(
            settled_async(Duration::from_millis(60), || 7, |v| *v == 8).await,
            7
        );
    }
}
