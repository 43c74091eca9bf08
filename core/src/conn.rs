//! The handles a shard and its runtime share: a connection's key ([`ConnKey`]), what the
//! runtime reads and writes for it ([`ConnIo`]), and the time ([`Now`]).
//!
//! A leaf: it knows nothing of shards, conversations or messages, so every module that only
//! needs to name a connection (messages, conversations, the store link) imports it alone.
//! Threading model: none; a `ConnKey` and a `Now` are plain `Copy` values that cross shards,
//! a `ConnIo` stays on its shard.

use crate::outbox::Outbox;
use std::task::Waker;
use switchboard_protocol::CloseCode;

/// A connection on its shard: a slot index and the slot's generation, so a key held by
/// another shard never reaches the slot's next occupant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct ConnKey {
    /// The slot's index in its shard's table.
    pub(crate) idx: u32,
    /// The slot's generation when the connection took it.
    pub(crate) gen: u32,
}

impl ConnKey {
    pub fn new(idx: u32, gen: u32) -> Self {
        Self { idx, gen }
    }
}

/// The time, passed in by whoever drives the shard.
#[derive(Clone, Copy, Debug, Default)]
pub struct Now {
    /// Monotonic milliseconds (deadlines, rate limits).
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch (message timestamps, token expiry).
    pub unix_ms: u64,
}

/// What the runtime reads and writes for one connection.
#[derive(Debug, Default)]
pub struct ConnIo {
    /// Frames to write, oldest first.
    pub outbox: Outbox,
    /// Woken whenever there is something new below.
    pub waker: Option<Waker>,
    /// Close the connection with this code (after writing nothing more from the outbox
    /// for `SlowConsumer`, after flushing it otherwise).
    pub close: Option<CloseCode>,
    /// Send a WebSocket ping.
    pub ping_due: bool,
    /// A paged replay waits for this connection to read what it has: call
    /// `Shard::on_drained` once the outbox is empty (and clear this).
    pub drain_wanted: bool,
}

impl ConnIo {
    /// Wakes the runtime's task for this connection, if it waits.
    pub(crate) fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }
}
