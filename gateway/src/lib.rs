//! The Switchboard gateway: a thread-per-core WebSocket server on glommio.
//!
//! - [`config`]: the one configuration, loaded and validated at start.
//! - [`server`]: binds the listeners and starts one pinned shard per core.
//! - [`runtime`]: a shard at run time: channel mesh tasks, timers, accept loop.
//! - [`shard_ctx`]: what a shard's tasks share: the core state, outgoing mesh traffic, wake-ups.
//! - [`connection`]: one client connection as one task, handshake to close.
//! - [`flush_gate`]: a shard's writes of one executor turn, sent together.
//! - [`http`]: sans-IO request parsing and responses.
//! - [`metrics`]: Prometheus names and per-shard handles.
//! - [`bridge_link`]: each shard's connection to the storage bridge.
//! - [`supervisor`]: the storage bridge as a child process, for the one-command start.
//! - [`whole_reads`]: one `recv` per readable socket, whatever room tungstenite offers.
//!
//! All decisions (routing, assignment, deadlines, validation) live in `switchboard-core`;
//! this crate moves bytes between sockets, the core and other shards.

pub mod assets;
pub mod bridge_link;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod flush_gate;
pub mod http;
pub mod metrics;
mod notify;
pub mod preflight;
pub mod runtime;
pub mod server;
pub mod shard_ctx;
pub mod supervisor;
pub mod whole_reads;
