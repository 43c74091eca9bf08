//! The gateway's one configuration: defaults, then a TOML file (`--config`), then
//! environment variables (`SWITCHBOARD_*`), then flags. Validated once at start; a bad
//! value stops the process with exit code 64 and a message naming the key.
//!
//! Every key, its default and its meaning is listed in `docs/configuration.md`; a test checks
//! that the document and [`Config::default`] agree.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_core::CoreConfig;
use switchboard_protocol::bridge::{MAX_MESSAGE_BYTES, MAX_SEQ_LEASE};

/// How the gateway reaches its storage bridge.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BridgeMode {
    Spawn,
    External,
    Off,
}

/// Every setting of the gateway.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address for WebSocket, `/healthz` and `/metrics`.
    pub listen: SocketAddr,
    /// A second address serving the same over TLS (wss://, https://); unset: none.
    pub tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain (PEM), leaf first; reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM: PKCS#8, PKCS#1 or SEC1); reloaded on SIGHUP.
    pub tls_key: Option<PathBuf>,
    /// Number of shards (threads, each pinned to a core); 0 means one per available core.
    pub shards: usize,
    /// Pin each shard to a core.
    pub pin: bool,
    /// Where the generated secret, the bridge socket and (with a spawned bridge and no
    /// DATABASE_URL) the embedded SQLite database live.
    pub data_dir: PathBuf,
    /// The token-signing secret; prefer `secret_file` or the environment.
    pub secret: Option<String>,
    /// A file holding the token-signing secret.
    pub secret_file: Option<PathBuf>,
    /// Exact `Origin` values allowed to open WebSockets; empty allows any origin.
    pub allowed_origins: Vec<String>,
    /// Most open conversations per agent.
    pub agent_capacity: u32,
    /// Recent messages kept per conversation for resume.
    pub window: usize,
    /// Idle deadlines per client kind, in seconds.
    pub idle_web_s: u64,
    pub idle_mobile_s: u64,
    pub idle_api_s: u64,
    /// Per-connection rate limit: frames per second and burst.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// Largest WebSocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Bytes queued to one connection before it is closed as a slow consumer.
    pub max_outbox_bytes: usize,
    /// Per-connection read buffer, in bytes.
    pub read_buffer_bytes: usize,
    /// Time allowed from TCP accept to a complete HTTP upgrade request, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Largest HTTP request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// listen(2) backlog per shard.
    pub backlog: u32,
    /// Per source address, for the whole gateway (each shard holds its share): open
    /// connections, handshakes in progress, and new connections per second and at once.
    /// Over any, a new connection is closed at accept. 0: no limit of that kind.
    pub max_connections_per_source: u32,
    pub max_unfinished_per_source: u32,
    pub new_connections_per_source_per_s: u32,
    pub new_connections_per_source_burst: u32,
    /// On SIGTERM: time allowed to flush and close every connection, in seconds.
    pub shutdown_grace_s: u64,
    /// io_uring registered buffer memory per shard, in KiB. Registered with each of the
    /// shard's three rings, it counts three times against RLIMIT_MEMLOCK, in whole pages;
    /// only glommio's file I/O uses it, so the default is its floor (64).
    pub io_memory_kib: usize,
    /// After work, a shard spins this long (microseconds) before sleeping, so that traffic
    /// arriving right after does not pay for a sleep and a wake-up (0: sleep at once).
    pub spin_before_park_us: u64,
    /// Capacity of each cross-shard channel, in batches.
    pub channel_capacity: usize,
    /// The latency glommio is asked to keep for connection and relay tasks, in
    /// microseconds; 0: none (a task queue that is not latency-sensitive, the default).
    pub task_queue_latency_us: u64,
    /// Visitor token lifetime, in seconds.
    pub visitor_token_ttl_s: u64,
    /// A conversation nobody wrote in for this many seconds is closed (its agent gets the
    /// place back); 0 never closes one.
    pub conversation_idle_close_s: u64,
    /// What a visitor is told when no agent is online (its message waits for one).
    pub offline_text: String,
    /// A conversation its new agent has not answered within this many seconds goes to
    /// another agent with room; 0 never re-routes.
    pub reroute_after_s: u64,
    /// The storage bridge: `spawn` runs it as a supervised child process, `external`
    /// connects to one started separately, `off` keeps everything in memory (acks mean
    /// sequenced, not stored).
    pub bridge: BridgeMode,
    /// The bridge's Unix socket; default `<data_dir>/bridge.sock`.
    pub bridge_socket: Option<PathBuf>,
    /// The `storage-bridge` executable for `spawn`; default: next to this executable.
    pub bridge_command: Option<PathBuf>,
    /// HTTP address the spawned bridge serves its API on (empty: none).
    pub bridge_http: String,
    /// The AI layer's configuration, given to the spawned bridge (docs/ai.md). Unset: no
    /// bot, every conversation goes to humans.
    pub ai_config: Option<PathBuf>,
    /// Messages per shard sent to storage and not yet confirmed before new ones get
    /// `overloaded`.
    pub max_unconfirmed: usize,
    /// Seqs a conversation's home shard leases from the store at a time (docs/protocol.md,
    /// "Seqs"): after a crash a conversation's seqs skip at most this many.
    pub seq_lease: u64,
    /// Test only: a path that echoes every WebSocket message back, through the same
    /// handshake, limits and framing as chat connections (for the Autobahn suite). Unset in
    /// production.
    pub echo_path: Option<String>,
    /// Several gateway nodes as one service (docs/cluster.md); off by default.
    pub cluster: ClusterSettings,
}

/// The `[cluster]` table: this node joins the others through Redis; they share one
/// PostgreSQL (`DATABASE_URL`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Off: one node, no Redis needed (the default).
    pub enabled: bool,
    /// Redis URLs: one instance, or seeds of a Redis Cluster (`redis_cluster`).
    pub redis: Vec<String>,
    pub redis_cluster: bool,
    /// This node's name (logs, the membership); default: the host name and the port.
    pub node_id: String,
    /// The address clients reach this node at (shown in the membership).
    pub advertise: String,
    /// How often the node writes its heartbeat, and how long without one before the
    /// others count it dead, in milliseconds.
    pub heartbeat_ms: u64,
    pub dead_after_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            redis: Vec::new(),
            redis_cluster: false,
            node_id: String::new(),
            advertise: String::new(),
            heartbeat_ms: 500,
            dead_after_ms: 3000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let core = CoreConfig::default();
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            shards: 0,
            pin: true,
            data_dir: PathBuf::from("switchboard-data"),
            secret: None,
            secret_file: None,
            allowed_origins: Vec::new(),
            agent_capacity: core.agent_capacity,
            window: core.window,
            idle_web_s: core.idle_web.as_secs(),
            idle_mobile_s: core.idle_mobile.as_secs(),
            idle_api_s: core.idle_api.as_secs(),
            rate_per_sec: core.rate_per_sec,
            rate_burst: core.rate_burst,
            max_message_bytes: 64 * 1024,
            max_outbox_bytes: core.max_outbox_bytes,
            read_buffer_bytes: 1024,
            handshake_timeout_ms: 10_000,
            max_header_bytes: 8 * 1024,
            backlog: 4096,
            max_connections_per_source: 5000,
            max_unfinished_per_source: 500,
            new_connections_per_source_per_s: 200,
            new_connections_per_source_burst: 1000,
            shutdown_grace_s: 10,
            io_memory_kib: 64,
            spin_before_park_us: 0,
            channel_capacity: 1024,
            task_queue_latency_us: 0,
            visitor_token_ttl_s: core.visitor_token_ttl_s,
            conversation_idle_close_s: core.conversation_idle_close.map_or(0, |d| d.as_secs()),
            offline_text: core.offline_text.clone(),
            reroute_after_s: core.reroute_after.map_or(0, |d| d.as_secs()),
            echo_path: None,
            bridge: BridgeMode::Spawn,
            bridge_socket: None,
            bridge_command: None,
            ai_config: None,
            bridge_http: "127.0.0.1:8081".into(),
            max_unconfirmed: core.max_unconfirmed,
            seq_lease: core.seq_lease,
            cluster: ClusterSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("`{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("secret: {0}")]
    Secret(String),
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    /// The per-source limits for the whole gateway (0 means none: the largest values).
    pub fn source_limits(&self) -> switchboard_core::source_limits::Limits {
        let or_max = |v: u32| if v == 0 { u32::MAX } else { v };
        let per_s = match self.new_connections_per_source_per_s {
            0 => f64::MAX / 4.0,
            v => v as f64,
        };
        let burst = match self.new_connections_per_source_burst {
            0 => f64::MAX / 4.0,
            v => v as f64,
        };
        switchboard_core::source_limits::Limits {
            max_open: or_max(self.max_connections_per_source),
            max_unfinished: or_max(self.max_unfinished_per_source),
            rate_per_sec: per_s,
            burst,
        }
    }

    /// Checks every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.enabled {
            if self.cluster.redis.is_empty() && self.bridge == BridgeMode::Spawn {
                return Err(invalid(
                    "cluster.redis",
                    "a cluster needs a Redis URL (for the bridge this gateway spawns)",
                ));
            }
            if self.bridge == BridgeMode::Off {
                return Err(invalid(
                    "cluster.enabled",
                    "a cluster needs the storage bridge (and PostgreSQL)",
                ));
            }
            if self.cluster.heartbeat_ms == 0
                || self.cluster.dead_after_ms < 2 * self.cluster.heartbeat_ms
            {
                return Err(invalid(
                    "cluster.dead_after_ms",
                    "must be at least twice `cluster.heartbeat_ms`",
                ));
            }
        }
        if self.tls_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(invalid("tls_listen", "needs `tls_cert` and `tls_key`"));
        }
        if self.tls_listen.is_some() && self.tls_listen == Some(self.listen) {
            return Err(invalid("tls_listen", "must differ from `listen`"));
        }
        if self.shards > 1024 {
            return Err(invalid("shards", "at most 1024"));
        }
        if self.agent_capacity == 0 {
            return Err(invalid("agent_capacity", "must be at least 1"));
        }
        if !(1..=100_000).contains(&self.window) {
            return Err(invalid("window", "must be 1..=100000"));
        }
        for (key, v) in [
            ("idle_web_s", self.idle_web_s),
            ("idle_mobile_s", self.idle_mobile_s),
            ("idle_api_s", self.idle_api_s),
        ] {
            if !(2..=86_400).contains(&v) {
                return Err(invalid(key, "must be 2..=86400 seconds"));
            }
        }
        if !(self.rate_per_sec > 0.0 && self.rate_per_sec.is_finite()) {
            return Err(invalid("rate_per_sec", "must be a positive number"));
        }
        if !(self.rate_burst >= 1.0 && self.rate_burst.is_finite()) {
            return Err(invalid("rate_burst", "must be at least 1"));
        }
        if !(256..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(invalid("max_message_bytes", "must be 256..=16777216"));
        }
        if self.bridge != BridgeMode::Off && self.max_message_bytes > MAX_MESSAGE_BYTES {
            return Err(invalid(
                "max_message_bytes",
                "must be at most 8388352 with a storage bridge (one stored message must fit \
                 one page of the bridge link); only `--bridge off` allows up to 16777216",
            ));
        }
        if !(2..=MAX_SEQ_LEASE).contains(&self.seq_lease) {
            return Err(invalid("seq_lease", "must be 2..=1048576"));
        }
        if self.bridge != BridgeMode::Off && self.seq_lease > self.window as u64 / 2 {
            return Err(invalid(
                "seq_lease",
                "must be at most half of `window` (every message not yet stored must still be in the window a resume replays)",
            ));
        }
        if self.max_outbox_bytes < self.max_message_bytes {
            return Err(invalid(
                "max_outbox_bytes",
                "must be at least max_message_bytes",
            ));
        }
        if !(256..=1024 * 1024).contains(&self.read_buffer_bytes) {
            return Err(invalid("read_buffer_bytes", "must be 256..=1048576"));
        }
        if !(100..=600_000).contains(&self.handshake_timeout_ms) {
            return Err(invalid("handshake_timeout_ms", "must be 100..=600000"));
        }
        if !(512..=64 * 1024).contains(&self.max_header_bytes) {
            return Err(invalid("max_header_bytes", "must be 512..=65536"));
        }
        if !(1..=65_535).contains(&self.backlog) {
            return Err(invalid("backlog", "must be 1..=65535"));
        }
        if !(64..=65_536).contains(&self.io_memory_kib) {
            return Err(invalid("io_memory_kib", "must be 64..=65536"));
        }
        if self.task_queue_latency_us > 1_000_000 {
            return Err(invalid("task_queue_latency_us", "must be 0..=1000000"));
        }
        if !(16..=1_000_000).contains(&self.channel_capacity) {
            return Err(invalid("channel_capacity", "must be 16..=1000000"));
        }
        if self.max_unconfirmed == 0 {
            return Err(invalid("max_unconfirmed", "must be positive"));
        }
        if self.offline_text.is_empty() || self.offline_text.len() > 1000 {
            return Err(invalid("offline_text", "must be 1 to 1000 bytes"));
        }
        if self.reroute_after_s > 86_400 {
            return Err(invalid(
                "reroute_after_s",
                "must be 0 (never) or at most a day (86400)",
            ));
        }
        if self.conversation_idle_close_s > 365 * 86_400 {
            return Err(invalid(
                "conversation_idle_close_s",
                "must be 0 (never) or at most a year (31536000)",
            ));
        }
        if self.visitor_token_ttl_s == 0 {
            return Err(invalid("visitor_token_ttl_s", "must be positive"));
        }
        if self.secret.is_some() && self.secret_file.is_some() {
            return Err(invalid(
                "secret",
                "set either secret or secret_file, not both",
            ));
        }
        if let Some(p) = &self.echo_path {
            if !p.starts_with('/') || p.starts_with("/ws/") || p == "/healthz" || p == "/metrics" {
                return Err(invalid(
                    "echo_path",
                    "must start with / and not shadow another endpoint",
                ));
            }
        }
        for o in &self.allowed_origins {
            if o.is_empty() || o.ends_with('/') {
                return Err(invalid(
                    "allowed_origins",
                    format!("`{o}` must be an origin like https://example.com"),
                ));
            }
        }
        Ok(())
    }

    /// The configuration as TOML, with the secret (if any) redacted.
    pub fn to_toml_redacted(&self) -> String {
        let mut c = self.clone();
        if c.secret.is_some() {
            c.secret = Some("<redacted>".into());
        }
        toml::to_string(&c).expect("the config serialises")
    }

    /// The bridge's socket path.
    pub fn bridge_socket_path(&self) -> PathBuf {
        self.bridge_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("bridge.sock"))
    }

    /// The number of shards to run.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// This node's name in its cluster: `cluster.node_id`, or the host name and the port.
    pub fn node_id(&self) -> String {
        if !self.cluster.node_id.is_empty() {
            return self.cluster.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        format!("{host}:{}", self.listen.port())
    }

    /// The core's view of these settings.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            agent_capacity: self.agent_capacity,
            window: self.window,
            idle_web: Duration::from_secs(self.idle_web_s),
            idle_mobile: Duration::from_secs(self.idle_mobile_s),
            idle_api: Duration::from_secs(self.idle_api_s),
            rate_per_sec: self.rate_per_sec,
            rate_burst: self.rate_burst,
            max_outbox_bytes: self.max_outbox_bytes,
            visitor_token_ttl_s: self.visitor_token_ttl_s,
            durable: self.bridge != BridgeMode::Off,
            max_unconfirmed: self.max_unconfirmed,
            seq_lease: self.seq_lease,
            conversation_idle_close: (self.conversation_idle_close_s > 0)
                .then(|| Duration::from_secs(self.conversation_idle_close_s)),
            offline_text: self.offline_text.clone(),
            reroute_after: (self.reroute_after_s > 0)
                .then(|| Duration::from_secs(self.reroute_after_s)),
            ..CoreConfig::default()
        }
    }

    /// The token secret: from `secret`, `secret_file`, or else a random one generated once
    /// into `<data_dir>/secret` (mode 0600) and reused from then on. No secret is built in.
    pub fn load_secret(&self) -> Result<Vec<u8>, ConfigError> {
        if let Some(s) = &self.secret {
            return Ok(s.as_bytes().to_vec());
        }
        let (path, generate) = match &self.secret_file {
            Some(p) => (p.clone(), false),
            None => (self.data_dir.join("secret"), true),
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().as_bytes().to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
                let secret: String = (0..4)
                    .map(|_| format!("{:016x}", fastrand::u64(..) ^ random_seed()))
                    .collect();
                write_private(&path, &secret).map_err(|e| {
                    ConfigError::Secret(format!("cannot create {}: {e}", path.display()))
                })?;
                tracing::warn!(path = %path.display(), "no secret configured: generated one (keep this file private)");
                Ok(secret.into_bytes())
            }
            Err(e) => Err(ConfigError::Secret(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
}

/// Randomness from the kernel for the generated secret (fastrand alone is not meant for keys).
fn random_seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom is readable");
    u64::from_ne_bytes(b)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key and its default is in docs/configuration.md.
    #[test]
    fn the_reference_documents_every_key_and_default() {
        let doc = include_str!("../../docs/configuration.md");
        let defaults: toml::Table = toml::from_str(&Config::default().to_toml_redacted()).unwrap();
        // A table's keys are documented as `table.key`.
        let mut flat: Vec<(String, toml::Value)> = Vec::new();
        for (key, value) in &defaults {
            match value {
                toml::Value::Table(t) => {
                    flat.extend(t.iter().map(|(k, v)| (format!("{key}.{k}"), v.clone())))
                }
                v => flat.push((key.clone(), v.clone())),
            }
        }
        for (key, value) in &flat {
            let shown = match value {
                toml::Value::String(s) => format!("`\"{s}\"`"),
                other => format!("`{other}`"),
            };
            let row = format!("| `{key}` | {shown} |");
            assert!(
                doc.contains(&row),
                "docs/configuration.md lacks the row starting `{row}`"
            );
        }
        for key in [
            "secret",
            "secret_file",
            "echo_path",
            "bridge_socket",
            "bridge_command",
            "ai_config",
        ] {
            assert!(doc.contains(&format!("| `{key}` | unset |")), "{key}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:9000\"\nidle_web_s = 30\n").unwrap();
        assert_eq!(
            (c.listen.port(), c.idle_web_s, c.idle_api_s),
            (9000, 30, 300)
        );
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = Config {
            idle_web_s: 1,
            ..Config::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("idle_web_s"));
        let bad = Config {
            max_outbox_bytes: 10,
            ..Config::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_outbox_bytes"));
        let bad = Config {
            allowed_origins: vec!["https://x.com/".into()],
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }

    /// A message too large for one page of the bridge link is refused at start, unless
    /// nothing is stored.
    #[test]
    fn a_message_limit_the_bridge_link_cannot_carry_is_refused() {
        let big = Config {
            max_message_bytes: MAX_MESSAGE_BYTES + 1,
            max_outbox_bytes: 32 << 20,
            ..Config::default()
        };
        let e = big.validate().unwrap_err().to_string();
        assert!(
            e.contains("max_message_bytes") && e.contains("8388352"),
            "{e}"
        );
        let at_limit = Config {
            max_message_bytes: MAX_MESSAGE_BYTES,
            ..big.clone()
        };
        at_limit.validate().unwrap();
        let memory_only = Config {
            bridge: BridgeMode::Off,
            ..big
        };
        memory_only.validate().unwrap();
    }

    #[test]
    fn generated_secret_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sb-secret-{}", std::process::id()));
        let c = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        let a = c.load_secret().unwrap();
        let b = c.load_secret().unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
        let mode = std::fs::metadata(dir.join("secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
