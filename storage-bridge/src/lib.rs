//! The storage bridge: a separate tokio process that owns all persistence, so no gateway
//! shard ever blocks on a database. Gateway shards reach it over a Unix socket.
//!
//! - [`store`]: PostgreSQL or embedded SQLite behind one interface, with migrations.

pub mod store;
