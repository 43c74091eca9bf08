//! The runtime-free heart of the gateway: every decision the gateway makes, as plain state
//! machines that take time as an argument and never touch a socket.
//!
//! - [`routing`]: which shard owns a conversation, which shard runs assignment.
//! - [`conversation`]: a conversation's state on its home shard (seq, window, dedupe).
//! - [`assignment`]: the dispatcher that gives conversations to agents and queues the rest.
//! - [`idle`]: idle deadlines for many connections without a timer per frame.
//! - [`ratelimit`]: the per-connection token bucket.
//! - [`outbox`]: the bounded per-connection outbound queue.
//! - [`persist`]: what a home shard asks the storage bridge, what waits for it, and what is
//!   sent again after a reconnect: every request on the link, bounded by construction.
//! - [`lease`]: seq leases, so that no seq anyone saw is ever used for another message.
//! - [`auth`]: who is connecting, from the upgrade request's query.
//! - [`sites`]: the sites whose visitors the gateway admits, their hours and texts.
//! - [`conn`]: a connection's key and I/O state, and the time: what shards and the runtime share.
//! - [`messages`]: what shards send each other: a [`ShardMsg`] is a message for one role.
//! - [`shard`]: one shard's whole state; it consumes client frames and [`ShardMsg`]s from other
//!   shards, and produces frames for its connections and messages for other shards. It plays
//!   three roles, each in its own module: the connections it accepted (`shard::conns`), the
//!   conversations whose home it is (`shard::home`), and on shard 0 the dispatcher
//!   (`shard::dispatch`).
//!
//! Threading model: none. A [`Shard`] is owned by exactly one thread (the gateway pins one per
//! core); shards only exchange [`ShardMsg`] values, which are `Send`. Tests drive several
//! shards in one thread by moving those values between them.

pub mod assignment;
pub mod auth;
pub mod config;
pub mod conn;
pub mod conversation;
pub mod idle;
pub mod lease;
pub mod messages;
pub mod outbox;
pub mod persist;
pub mod ratelimit;
pub mod routing;
pub mod shard;
pub mod sites;
pub mod source_limits;

pub use auth::Identity;
pub use config::{ClientKind, CoreConfig};
pub use conn::{ConnIo, ConnKey, Now};
pub use messages::ShardMsg;
pub use routing::ShardId;
pub use shard::{Shard, ShardStats};
