//! What the integration tests of several crates share: the processes under test run as a
//! real deployment runs them, the servers they depend on, clients to talk to them, and
//! waiting with deadlines instead of sleeping.
//!
//! | module | its one job |
//! |---|---|
//! | [`process`] | a child process owned by a test: binary located next to the test, stdout lines kept and waited on, SIGTERM, SIGKILL by PID on drop |
//! | [`gateway`] | the `gateway` binary: start (2 shards, port 0, own data dir), restart, tokens, clients, HTTP, metrics |
//! | [`bridge`] | the `storage-bridge` binary: start in a directory on a Unix socket, restart, flags for a gateway to use it, metrics |
//! | [`redis`] | a redis-server of a test's own (kill it, restart it, reload its snapshot) |
//! | [`ws`] | a protocol-v1 WebSocket client (tokio-tungstenite) that waits for frames by type |
//! | [`raw_ws`] | a raw TCP client for handshakes and frames no library sends |
//! | [`http`] | one plain HTTP/1.1 GET |
//! | [`metrics`] | a `/metrics` scrape and a metric's value in it |
//! | [`pg`] | a PostgreSQL schema of a test's own, and queries in it |
//! | [`wait`] | polling with a deadline: [`eventually`], [`settled`] (and async forms), the standard timeouts |
//! | [`ports`], [`dirs`] | a free loopback port, waiting for a listener, a fresh temporary directory |
//!
//! Binaries: a package's own integration tests get their binaries built by cargo; a test
//! of another package must build them first (`cargo build -p storage-bridge`, `-p gateway`).
//! The harness finds them in the target directory the running test was built in
//! ([`process::bin_path`]).
//!
//! Threading: everything blocks the calling thread except the [`ws::Client`] and the
//! `*_async` waits, which are tokio. Blocking calls (an HTTP scrape, a process start) are
//! fine in a tokio test: the processes under test do not depend on the test's runtime.

pub mod accounts;
pub mod bridge;
pub mod dirs;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod ports;
pub mod process;
pub mod raw_ws;
pub mod redis;
pub mod tls;
pub mod wait;
pub mod ws;

pub use bridge::Bridge;
pub use dirs::temp_dir;
pub use gateway::Gateway;
pub use metrics::Metrics;
pub use ports::{free_addr, free_port};
pub use process::Proc;
pub use raw_ws::Raw;
pub use redis::{RedisCluster, RedisProc};
pub use wait::{eventually, eventually_async, settled, settled_async, TIMEOUT};
pub use ws::{Client, Ended};
