//! `gateway`: run the Switchboard gateway, or mint an agent token.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gateway::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use switchboard_protocol::AgentId;

/// Exit code for a bad configuration or bad arguments (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Switchboard customer-service chat gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve(Box<ServeArgs>),
    /// Print an agent token signed with the configured secret.
    Token(TokenArgs),
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    Config,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file (keys as in docs/configuration.md).
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:8080 (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_LISTEN", global = true)]
    listen: Option<std::net::SocketAddr>,
    /// A second listen address serving the same over TLS (wss://, https://).
    #[arg(long, env = "SWITCHBOARD_TLS_LISTEN", global = true)]
    tls_listen: Option<std::net::SocketAddr>,
    /// The TLS certificate chain, PEM (reloaded on SIGHUP).
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// The TLS private key, PEM (reloaded on SIGHUP).
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
    /// Most open connections from one source address (0: no limit).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_SOURCE", global = true)]
    max_connections_per_source: Option<u32>,
    /// Most handshakes in progress from one source address (0: no limit).
    #[arg(long, env = "SWITCHBOARD_MAX_UNFINISHED_PER_SOURCE", global = true)]
    max_unfinished_per_source: Option<u32>,
    /// New connections per second from one source address (0: no limit).
    #[arg(
        long,
        env = "SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_PER_S",
        global = true
    )]
    new_connections_per_source_per_s: Option<u32>,
    /// New connections at once from one source address (0: no limit).
    #[arg(
        long,
        env = "SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_BURST",
        global = true
    )]
    new_connections_per_source_burst: Option<u32>,
    /// Number of shards (0 = one per core).
    #[arg(long, env = "SWITCHBOARD_SHARDS", global = true)]
    shards: Option<usize>,
    /// Data directory (generated secret, bridge socket, embedded database).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// File holding the token secret.
    #[arg(long, env = "SWITCHBOARD_SECRET_FILE", global = true)]
    secret_file: Option<PathBuf>,
    /// Idle deadline for web clients, in seconds.
    #[arg(long, env = "SWITCHBOARD_IDLE_WEB_S", global = true)]
    idle_web_s: Option<u64>,
    /// Idle deadline for mobile clients, in seconds.
    #[arg(long, env = "SWITCHBOARD_IDLE_MOBILE_S", global = true)]
    idle_mobile_s: Option<u64>,
    /// Idle deadline for API clients, in seconds.
    #[arg(long, env = "SWITCHBOARD_IDLE_API_S", global = true)]
    idle_api_s: Option<u64>,
    /// Open conversations per agent.
    #[arg(long, env = "SWITCHBOARD_AGENT_CAPACITY", global = true)]
    agent_capacity: Option<u32>,
    /// Frames per second allowed per connection.
    #[arg(long, env = "SWITCHBOARD_RATE_PER_SEC", global = true)]
    rate_per_sec: Option<f64>,
    /// Burst of frames allowed per connection.
    #[arg(long, env = "SWITCHBOARD_RATE_BURST", global = true)]
    rate_burst: Option<f64>,
    /// Largest WebSocket message, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES", global = true)]
    max_message_bytes: Option<usize>,
    /// Outbound bytes queued per connection before it is closed as a slow consumer.
    #[arg(long, env = "SWITCHBOARD_MAX_OUTBOX_BYTES", global = true)]
    max_outbox_bytes: Option<usize>,
    /// Handshake deadline, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT_MS", global = true)]
    handshake_timeout_ms: Option<u64>,
    /// Grace period for SIGTERM drain, in seconds.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_S", global = true)]
    shutdown_grace_s: Option<u64>,
    /// Storage bridge: spawn (child process), external (already running), off (memory only).
    #[arg(long, env = "SWITCHBOARD_BRIDGE", global = true)]
    bridge: Option<gateway::config::BridgeMode>,
    /// The bridge's Unix socket (default <data-dir>/bridge.sock).
    #[arg(long, env = "SWITCHBOARD_BRIDGE_SOCKET", global = true)]
    bridge_socket: Option<PathBuf>,
    /// HTTP address for the spawned bridge's API ("" for none).
    #[arg(long, env = "SWITCHBOARD_BRIDGE_HTTP", global = true)]
    bridge_http: Option<String>,
    /// The AI layer's configuration (TOML), for the spawned bridge (see docs/ai.md).
    #[arg(long = "ai", env = "SWITCHBOARD_AI_CONFIG", global = true)]
    ai_config: Option<PathBuf>,
    /// Seconds without a message after which a conversation is closed (0: never).
    #[arg(long, env = "SWITCHBOARD_CONVERSATION_IDLE_CLOSE_S", global = true)]
    conversation_idle_close_s: Option<u64>,
    /// Seconds a new agent has to answer before its conversation goes to another (0: never).
    #[arg(long, env = "SWITCHBOARD_REROUTE_AFTER_S", global = true)]
    reroute_after_s: Option<u64>,
    /// Unconfirmed messages per shard before new ones get `overloaded`.
    #[arg(long, env = "SWITCHBOARD_MAX_UNCONFIRMED", global = true)]
    max_unconfirmed: Option<usize>,
    /// Seqs a conversation's home shard leases from the store at a time.
    #[arg(long, env = "SWITCHBOARD_SEQ_LEASE", global = true)]
    seq_lease: Option<u64>,
    /// Microseconds a shard spins after work before sleeping.
    #[arg(long, env = "SWITCHBOARD_SPIN_BEFORE_PARK_US", global = true)]
    spin_before_park_us: Option<u64>,
    /// Latency glommio keeps for connection tasks, in microseconds (0: not latency-sensitive).
    #[arg(long, env = "SWITCHBOARD_TASK_QUEUE_LATENCY_US", global = true)]
    task_queue_latency_us: Option<u64>,
    /// Test only: serve a WebSocket echo endpoint at this path (for the Autobahn suite).
    #[arg(long, env = "SWITCHBOARD_ECHO_PATH", global = true)]
    echo_path: Option<String>,
    /// Do not pin shards to cores.
    #[arg(long, env = "SWITCHBOARD_NO_PIN", global = true)]
    no_pin: bool,
    /// Join a cluster of gateway nodes through this Redis (comma-separated seeds for a
    /// Redis Cluster; see `--cluster-redis-cluster`): sets `cluster.enabled`.
    #[arg(
        long,
        env = "SWITCHBOARD_CLUSTER_REDIS",
        global = true,
        value_delimiter = ','
    )]
    cluster_redis: Vec<String>,
    /// The `--cluster-redis` URLs are seeds of a Redis Cluster.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_REDIS_CLUSTER", global = true)]
    cluster_redis_cluster: bool,
    /// This node's name in the cluster.
    #[arg(long, env = "SWITCHBOARD_NODE_ID", global = true)]
    node_id: Option<String>,
    /// The address clients reach this node at (shown in the cluster's membership).
    #[arg(long, env = "SWITCHBOARD_ADVERTISE", global = true)]
    advertise: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    /// The agent's id (1-64 of A-Z a-z 0-9 . _ @ -).
    #[arg(long)]
    agent: String,
    /// Lifetime, e.g. 30m, 8h, 7d.
    #[arg(long, default_value = "8h", value_parser = parse_ttl)]
    ttl: Duration,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number with s, m, h or d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("ttl must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        set!(
            listen,
            shards,
            data_dir,
            idle_web_s,
            idle_mobile_s,
            idle_api_s,
            agent_capacity,
            rate_per_sec,
            rate_burst,
            max_message_bytes,
            max_outbox_bytes,
            handshake_timeout_ms,
            shutdown_grace_s,
            bridge,
            bridge_http,
            max_unconfirmed,
            seq_lease,
            conversation_idle_close_s,
            reroute_after_s,
            spin_before_park_us,
            task_queue_latency_us,
            max_connections_per_source,
            max_unfinished_per_source,
            new_connections_per_source_per_s,
            new_connections_per_source_burst
        );
        if let Some(a) = self.tls_listen {
            c.tls_listen = Some(a);
        }
        if let Some(p) = &self.tls_cert {
            c.tls_cert = Some(p.clone());
        }
        if let Some(p) = &self.tls_key {
            c.tls_key = Some(p.clone());
        }
        if let Some(p) = &self.bridge_socket {
            c.bridge_socket = Some(p.clone());
        }
        if let Some(p) = &self.echo_path {
            c.echo_path = Some(p.clone());
        }
        if let Some(p) = &self.ai_config {
            c.ai_config = Some(p.clone());
        }
        if let Some(p) = &self.secret_file {
            c.secret_file = Some(p.clone());
        }
        if let Ok(s) = std::env::var("SWITCHBOARD_SECRET") {
            c.secret = Some(s);
        }
        if !self.cluster_redis.is_empty() {
            c.cluster.enabled = true;
            c.cluster.redis = self.cluster_redis.clone();
        }
        if self.cluster_redis_cluster {
            c.cluster.redis_cluster = true;
        }
        if let Some(id) = &self.node_id {
            c.cluster.node_id = id.clone();
        }
        if let Some(a) = &self.advertise {
            c.cluster.advertise = a.clone();
        }
        if self.no_pin {
            c.pin = false;
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(t)) => token(&cli.serve, t),
        Some(Command::Serve(s)) => serve(&s),
        Some(Command::Config) => cli
            .serve
            .config()
            .map(|c| print!("{}", c.to_toml_redacted())),
        None => serve(&cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            let config_error = e.chain().any(|c| c.is::<gateway::config::ConfigError>());
            ExitCode::from(if config_error { EXIT_CONFIG } else { 1 })
        }
    }
}

fn token(args: &ServeArgs, t: TokenArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let agent = AgentId::new(&t.agent).ok_or_else(|| gateway::config::ConfigError::Invalid {
        key: "agent",
        problem: format!("`{}` is not a valid agent id", t.agent),
    })?;
    let signer = TokenSigner::new(&config.load_secret()?).context("token secret")?;
    let expires = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + t.ttl.as_secs();
    println!("{}", signer.mint(TokenKind::Agent, agent.as_str(), expires));
    Ok(())
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let prometheus = gateway::metrics::install()?;
    let shutdown = Arc::new(AtomicBool::new(false));
    // Load the secret first so a spawned bridge finds the same generated file.
    config.load_secret()?;
    let bridge = match config.bridge {
        gateway::config::BridgeMode::Spawn => {
            Some(gateway::supervisor::Supervisor::start(&config)?)
        }
        _ => None,
    };
    let bridge_pid = bridge.as_ref().map(|b| b.pid.clone());
    // A certificate that cannot be loaded stops the start, as a configuration error.
    let tls = match (&config.tls_listen, &config.tls_cert, &config.tls_key) {
        (Some(_), Some(cert), Some(key)) => Some(Arc::new(
            switchboard_protocol::tls::TlsSource::open(cert, key).map_err(|e| {
                gateway::config::ConfigError::Invalid {
                    key: "tls_cert",
                    problem: e.to_string(),
                }
            })?,
        )),
        _ => None,
    };
    spawn_signal_thread(shutdown.clone(), bridge_pid, tls.clone())?;
    {
        let handle = prometheus.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            })?;
    }
    let grace = Duration::from_secs(config.shutdown_grace_s);
    let result = gateway::server::run(config, prometheus, shutdown, tls);
    if let Some(b) = bridge {
        b.stop(grace);
    }
    result
}

/// SIGTERM drains gracefully (shards see the flag within 250 ms); SIGINT exits at once;
/// SIGHUP reloads the TLS certificate and goes on to the spawned bridge (its AI plugins
/// reload their files).
fn spawn_signal_thread(
    shutdown: Arc<AtomicBool>,
    bridge_pid: Option<Arc<std::sync::atomic::AtomicU32>>,
    tls: Option<Arc<switchboard_protocol::tls::TlsSource>>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    match tls.as_deref().map(switchboard_protocol::tls::TlsSource::reload) {
                        Some(Ok(())) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the old one")
                        }
                        None => {}
                    }
                    match &bridge_pid {
                        Some(pid) => {
                            tracing::info!("SIGHUP: passed to the bridge (its AI plugins' files, its TLS certificate)");
                            gateway::supervisor::signal(pid.load(Ordering::SeqCst), "HUP");
                        }
                        None => tracing::info!("SIGHUP: no spawned bridge to pass it to"),
                    }
                    continue;
                }
                if sig == SIGINT {
                    eprintln!("gateway: interrupted");
                    if let Some(pid) = &bridge_pid {
                        gateway::supervisor::terminate(pid.load(Ordering::SeqCst));
                    }
                    std::process::exit(130);
                }
                tracing::info!("SIGTERM: draining");
                shutdown.store(true, Ordering::Relaxed);
            }
        })?;
    Ok(())
}
