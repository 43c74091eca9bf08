//! The bridge's configuration: flags and `SWITCHBOARD_*` environment variables.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(name = "storage-bridge", version, about = "Switchboard storage bridge")]
pub struct Config {
    /// Unix socket the gateway shards connect to (created owner-only).
    #[arg(
        long,
        env = "SWITCHBOARD_BRIDGE_SOCKET",
        default_value = "switchboard-data/bridge.sock"
    )]
    pub socket: PathBuf,
    /// Data directory: the embedded SQLite database lives here when no database URL is set.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "switchboard-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL, e.g. postgres://user@127.0.0.1/db. Unset: embedded SQLite.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Largest size of the embedded SQLite database, in bytes; writes past it fail (and are
    /// retried) like a full disk. Unset: no limit but the disk.
    #[arg(long, env = "SWITCHBOARD_SQLITE_MAX_BYTES")]
    pub sqlite_max_bytes: Option<u64>,
    /// PostgreSQL connections in the pool.
    #[arg(long, env = "SWITCHBOARD_DB_POOL", default_value_t = 8)]
    pub db_pool: usize,
    /// Redis URL for the recent-history cache, e.g. redis://127.0.0.1:6379. Unset: no cache.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Messages kept per conversation in the Redis cache (more than the gateway's window, so
    /// that resumes and history pages just past the window are served from it).
    #[arg(long, env = "SWITCHBOARD_CACHE_MESSAGES", default_value_t = 1000)]
    pub cache_messages: usize,
    /// Prefix of every Redis key the bridge uses. Each bridge sharing a Redis needs its own:
    /// at start a bridge deletes the keys under its prefix that it did not write.
    #[arg(long, env = "SWITCHBOARD_CACHE_PREFIX", default_value = "sb:")]
    pub cache_prefix: String,
    /// Group commit: write a batch when this many messages wait...
    #[arg(long, env = "SWITCHBOARD_BATCH_MAX", default_value_t = 1024)]
    pub batch_max: usize,
    /// ...or when the oldest has waited this long (milliseconds).
    #[arg(long, env = "SWITCHBOARD_BATCH_DELAY_MS", default_value_t = 2)]
    pub batch_delay_ms: u64,
    /// Batches committing at once on PostgreSQL (SQLite always commits one at a time).
    #[arg(long, env = "SWITCHBOARD_COMMIT_CONCURRENCY", default_value_t = 2)]
    pub commit_concurrency: usize,
    /// Runtime worker threads. The bridge mostly waits on sockets and the database; on the
    /// 2-core reference host one thread gave a lower ack tail than two (p99 22-29 vs 36-46 ms
    /// at 20k msg/s, same CPU). SQLite calls run on separate blocking threads either way.
    #[arg(long, env = "SWITCHBOARD_BRIDGE_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// HTTP API address (history, health, metrics). Empty: no HTTP.
    #[arg(
        long,
        env = "SWITCHBOARD_BRIDGE_HTTP",
        default_value = "127.0.0.1:8081"
    )]
    pub http: String,
    /// API requests per second per caller (its credentials, or its address without any),
    /// sustained; over it, 429 with `Retry-After`. 0: no limit.
    #[arg(long, env = "SWITCHBOARD_API_RATE_PER_S", default_value_t = 50)]
    pub api_rate_per_s: u32,
    /// ...and at once.
    #[arg(long, env = "SWITCHBOARD_API_BURST", default_value_t = 200)]
    pub api_burst: u32,
    /// The largest API request body, in bytes (413 above it).
    #[arg(long, env = "SWITCHBOARD_API_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub api_max_body_bytes: usize,
    /// Serve the HTTP API over TLS (https only) with this certificate chain (PEM, leaf
    /// first); reloaded on SIGHUP. Needs `--tls-key`.
    #[arg(long, env = "SWITCHBOARD_BRIDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SWITCHBOARD_BRIDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The AI layer's configuration (TOML: the bot's mode and its plugins; see docs/ai.md).
    /// Unset: no bot, every conversation goes to humans.
    #[arg(long = "ai", env = "SWITCHBOARD_AI_CONFIG")]
    pub ai_config: Option<PathBuf>,
    /// Webhook deliveries: attempts in all (then a dead letter)...
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    pub webhook_attempts: u32,
    /// ...and the wait before the second, in milliseconds (doubled before each next one).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_BACKOFF_MS", default_value_t = 1000)]
    pub webhook_backoff_ms: u64,
    /// File holding the token secret (same as the gateway's); default `<data_dir>/secret`.
    #[arg(long, env = "SWITCHBOARD_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Join a cluster of gateway nodes through this Redis (docs/cluster.md): a URL, or
    /// several comma-separated seeds of a Redis Cluster. Unset: one node, no cluster. Needs
    /// `DATABASE_URL` (the nodes share one PostgreSQL).
    #[arg(long, env = "SWITCHBOARD_CLUSTER_REDIS", value_delimiter = ',')]
    pub cluster_redis: Vec<String>,
    /// The `--cluster-redis` URLs are seeds of a Redis Cluster (not one instance).
    #[arg(long, env = "SWITCHBOARD_CLUSTER_REDIS_CLUSTER")]
    pub cluster_redis_cluster: bool,
    /// This node's name in the cluster (for people: logs, the membership).
    #[arg(long, env = "SWITCHBOARD_NODE_ID", default_value = "")]
    pub node_id: String,
    /// The address this node's clients connect to (shown in the membership).
    #[arg(long, env = "SWITCHBOARD_ADVERTISE", default_value = "")]
    pub advertise: String,
    /// Prefix of the cluster's Redis keys: the same on every node of one cluster.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_PREFIX", default_value = "sbc:")]
    pub cluster_prefix: String,
    /// How often a node writes its heartbeat, in milliseconds...
    #[arg(long, env = "SWITCHBOARD_CLUSTER_HEARTBEAT_MS", default_value_t = 500)]
    pub cluster_heartbeat_ms: u64,
    /// ...and how long without one before the others count it dead.
    #[arg(
        long,
        env = "SWITCHBOARD_CLUSTER_DEAD_AFTER_MS",
        default_value_t = 3000
    )]
    pub cluster_dead_after_ms: u64,
    /// Relayed messages wait this long for more before going out to Redis, in microseconds:
    /// fewer, larger stream entries (less CPU per message) for that much latency. 0: at once.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_LINGER_US", default_value_t = 1000)]
    pub cluster_linger_us: u64,
    /// Test-only fault: while this file exists, `persist` requests are dropped unanswered
    /// and never committed (what a gateway crash loses). Never set it in production.
    #[arg(
        long,
        hide = true,
        env = "SWITCHBOARD_BRIDGE_FAULT_DROP_PERSISTS_WHILE"
    )]
    pub fault_drop_persists_while: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Creates or replaces an agent account (the first admin: `--role admin`), in the store
    /// the flags above name. The password is read from `--password-file` or standard input.
    CreateAgent(AgentArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The agent's id (1-64 of A-Z a-z 0-9 . _ @ -): what it logs in with.
    #[arg(long)]
    pub id: String,
    /// agent, supervisor or admin.
    #[arg(long, default_value = "agent")]
    pub role: String,
    /// The name shown to visitors and colleagues.
    #[arg(long)]
    pub name: Option<String>,
    /// A file holding the password (at least 8 characters); default: a line on stdin.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

impl Config {
    /// The cluster this bridge joins, if any.
    pub fn cluster(&self) -> anyhow::Result<Option<crate::cluster::ClusterConfig>> {
        if self.cluster_redis.is_empty() {
            return Ok(None);
        }
        if self.database_url.is_none() {
            anyhow::bail!(
                "--cluster-redis needs DATABASE_URL: the nodes of a cluster share one PostgreSQL"
            );
        }
        if self.cluster_heartbeat_ms == 0
            || self.cluster_dead_after_ms < 2 * self.cluster_heartbeat_ms
        {
            anyhow::bail!("--cluster-dead-after-ms must be at least twice --cluster-heartbeat-ms");
        }
        Ok(Some(crate::cluster::ClusterConfig {
            redis: self.cluster_redis.clone(),
            redis_cluster: self.cluster_redis_cluster,
            node_id: self.node_id.clone(),
            advertise: self.advertise.clone(),
            prefix: self.cluster_prefix.clone(),
            heartbeat: Duration::from_millis(self.cluster_heartbeat_ms),
            dead_after: Duration::from_millis(self.cluster_dead_after_ms),
            linger: Duration::from_micros(self.cluster_linger_us),
        }))
    }

    pub fn batch_delay(&self) -> Duration {
        Duration::from_millis(self.batch_delay_ms)
    }

    pub fn http_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.http.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.http.parse().map_err(|_| {
            anyhow::anyhow!("`--http {}`: expected IP:port", self.http)
        })?))
    }
}
