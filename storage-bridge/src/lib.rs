//! The storage bridge: a separate tokio process that owns all persistence, so no gateway
//! shard ever blocks on a database. Gateway shards reach it over a Unix socket.
//!
//! - [`accounts`]: agent accounts, passwords (argon2) and the tokens a login gives.
//! - [`api_keys`]: scoped, revocable keys for the site's other systems, kept hashed.
//! - [`ai`]: the AI plugin chain: the interface, the runner, the built-in plugins.
//! - [`assistant`]: feeds visitor messages to the chain and its decisions back to gateways.
//! - [`store`]: PostgreSQL or embedded SQLite behind one interface, with migrations.
//! - [`commit`]: group commit, confirming each request only after its batch commits.
//! - [`cache`]: the Redis cache of recent messages.
//! - [`cluster`]: several gateway nodes as one: membership and the relay between nodes,
//!   through Redis.
//! - [`random`]: random ids for what the API makes.
//! - [`reads`]: history and conversation loads, cache first.
//! - [`server`]: the Unix-socket protocol with gateway shards.
//! - [`http`]: the HTTP API (history with zstd, health, metrics).
//! - [`webhooks`]: signed, retried deliveries of what happens to the site's systems.
//! - [`config`]: flags and environment.
//!
//! Threading model: a multi-threaded tokio runtime; one committer task owns the write path.

pub mod accounts;
pub mod ai;
pub mod api_keys;
pub mod assistant;
pub mod cache;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod http;
pub mod random;
pub mod reads;
pub mod server;
pub mod store;
pub mod webhooks;
