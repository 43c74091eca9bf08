//! `storage-bridge`: persistence for the Switchboard gateway.

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;
use storage_bridge::accounts::Role;
use storage_bridge::ai::config::{AiConfig, Mode};
use storage_bridge::assistant::Assistant;
use storage_bridge::cache::Cache;
use storage_bridge::commit::Committer;
use storage_bridge::config::{AgentArgs, Command, Config};
use storage_bridge::reads::Reads;
use storage_bridge::store::{PgStore, SqliteStore, Store};
use switchboard_protocol::bridge::BotMode;
use switchboard_protocol::token::TokenSigner;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| "info,tantivy=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storage-bridge: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match &config.command {
        Some(Command::CreateAgent(a)) => rt.block_on(create_agent(&config, a)),
        None => rt.block_on(run(config)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage-bridge: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("bridge_commit_seconds".into()),
            &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("bridge_batch_messages".into()),
            &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0],
        )?
        .install_recorder()?;
    // Start error series at zero so alerts on their rate have a baseline.
    for kind in ["transient", "permanent"] {
        metrics::counter!("bridge_store_errors_total", "kind" => kind).absolute(0);
    }
    {
        let h = prometheus.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                h.run_upkeep();
            }
        });
    }
    let cluster = config.cluster()?.map(storage_bridge::cluster::Cluster::new);
    let store = open_store(&config).await?;
    tracing::info!(store = store.kind(), "store ready");
    let cache = match &config.redis_url {
        Some(url) => Some(
            Cache::start(url, config.cache_messages, &config.cache_prefix)
                .await
                .context("REDIS_URL")?,
        ),
        None => None,
    };
    let secret_path = config
        .secret_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("secret"));
    let signer = match std::env::var("SWITCHBOARD_SECRET")
        .ok()
        .or_else(|| std::fs::read_to_string(&secret_path).ok())
    {
        Some(s) => Some(TokenSigner::new(s.trim().as_bytes()).context("token secret")?),
        None => {
            tracing::warn!(path = %secret_path.display(), "no token secret: the HTTP history API answers 503");
            None
        }
    };
    let reads = Arc::new(Reads {
        store: store.clone(),
        cache: cache.clone(),
    });
    let (commit_tx, commit_rx) = tokio::sync::mpsc::channel(4096);
    let webhooks = storage_bridge::webhooks::Webhooks::start(
        store.clone(),
        storage_bridge::webhooks::Retry {
            attempts: config.webhook_attempts.max(1),
            backoff: Duration::from_millis(config.webhook_backoff_ms),
        },
    )
    .await
    .context("reading the webhooks")?;
    let committer = Committer {
        webhooks: Some(webhooks.clone()),
        store: store.clone(),
        cache,
        batch_max: config.batch_max,
        batch_delay: config.batch_delay(),
        concurrency: match *store {
            Store::Postgres(_) => config.commit_concurrency.clamp(1, config.db_pool.max(1)),
            Store::Sqlite(_) => 1,
        },
    };
    let committer = tokio::spawn(committer.run(commit_rx));

    let notices = storage_bridge::server::Notices::new(
        store
            .disabled_agents(100_000)
            .await
            .context("reading the disabled accounts")?,
        &store.sites().await.context("reading the sites")?,
    );
    // The certificate is read before anything listens: a bad one stops the start.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(
            switchboard_protocol::tls::TlsSource::open(cert, key).context("--tls-cert")?,
        )),
        _ => None,
    };
    if let Some(addr) = config.http_addr()? {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("HTTP on {addr}"))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line (the port may have been 0).
        match &tls {
            Some(_) => println!("storage-bridge https on {addr}"),
            None => println!("storage-bridge http on {addr}"),
        }
        let api = storage_bridge::http::Api {
            reads: reads.clone(),
            signer,
            prometheus,
            notices: notices.clone(),
            webhooks,
        };
        let limits = storage_bridge::http::Limits {
            rate_per_sec: config.api_rate_per_s as f64,
            burst: config.api_burst as f64,
            max_body_bytes: config.api_max_body_bytes,
        };
        let app = storage_bridge::http::router(api, limits);
        tracing::info!(%addr, tls = tls.is_some(), "HTTP API listening");
        match tls.clone() {
            Some(tls) => {
                tokio::spawn(storage_bridge::http::tls::serve(listener, app, tls));
            }
            None => {
                tokio::spawn(async move {
                    // The caller's address, for the limits of callers without credentials.
                    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "HTTP server stopped");
                    }
                });
            }
        }
    }
    let assistant = match &config.ai_config {
        Some(path) => start_ai(path)?,
        None => Assistant::off(),
    };
    {
        // SIGHUP: plugins read their files again (the knowledge base, without a restart),
        // and the HTTPS certificate is loaded again (a failed load keeps the old one).
        let assistant = assistant.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                assistant.reload();
                match tls
                    .as_deref()
                    .map(switchboard_protocol::tls::TlsSource::reload)
                {
                    Some(Ok(())) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the old one")
                    }
                    None => {}
                }
            }
        });
    }
    let listener = storage_bridge::server::bind(&config.socket)?;
    println!(
        "storage-bridge listening on {} ({})",
        config.socket.display(),
        store.kind()
    );
    tracing::info!(socket = %config.socket.display(), "listening");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("stopping: finishing queued writes");
    };
    let faults = storage_bridge::server::Faults {
        drop_persists_while: config.fault_drop_persists_while.clone(),
    };
    if faults.drop_persists_while.is_some() {
        tracing::warn!("test fault enabled: persists are dropped while the fault file exists");
    }
    let serving = storage_bridge::server::Serving {
        commits: commit_tx,
        reads,
        faults: Arc::new(faults),
        assistant,
        notices,
        cluster: cluster.clone(),
    };
    storage_bridge::server::serve(listener, serving, shutdown).await;
    if let Some(c) = &cluster {
        // The gateway has drained (it stops its bridge last): the others move this node's
        // conversations at their next heartbeat, not after `--cluster-dead-after-ms`.
        c.leave().await;
    }
    // Connections still hold senders; give in-flight writes a moment to land, then stop.
    let _ = tokio::time::timeout(Duration::from_secs(5), committer).await;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Opens the configured store (PostgreSQL, or the embedded SQLite file) and brings its schema
/// up to date; the database may not be up yet, so migrations are retried for a while.
async fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    let store = Arc::new(match &config.database_url {
        Some(url) => Store::Postgres(PgStore::new(url, config.db_pool).context("DATABASE_URL")?),
        None => {
            let path = config.data_dir.join("switchboard.db");
            let store =
                SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
            if let Some(max) = config.sqlite_max_bytes {
                store.set_max_bytes(max)?;
            }
            Store::Sqlite(store)
        }
    });
    // The database may not be up yet: retry migrations for a while, saying why.
    let mut delay = Duration::from_millis(200);
    let started = std::time::Instant::now();
    loop {
        match store.migrate().await {
            Ok(()) => break,
            Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(60) => {
                tracing::warn!(error = %e, "store not ready; retrying migrations");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("applying migrations"),
        }
    }
    Ok(store)
}

/// `storage-bridge create-agent`: an agent account (the first admin among them), with the
/// password read from a file or from standard input.
async fn create_agent(config: &Config, a: &AgentArgs) -> anyhow::Result<()> {
    let password = match &a.password_file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line
        }
    };
    let password = password.trim_end_matches(['\r', '\n']);
    let store = open_store(config).await?;
    let role = Role::parse(&a.role).context("--role must be agent, supervisor or admin")?;
    storage_bridge::accounts::create(&store, &a.id, a.name.clone(), password, role).await?;
    println!("agent {} saved ({})", a.id, role.as_str());
    Ok(())
}

/// Loads the AI layer's configuration and starts it; any mistake in it stops the bridge
/// with the plugin named (a silent bot is worse than none).
fn start_ai(path: &std::path::Path) -> anyhow::Result<Assistant> {
    let ai = AiConfig::load(path)?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let chain = ai.chain(base)?;
    let mode = match ai.mode {
        Mode::Off => BotMode::Off,
        Mode::BotFirst => BotMode::BotFirst,
        Mode::WhenNoAgent => BotMode::WhenNoAgent,
    };
    let plugins: Vec<&str> = ai.plugins.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(mode = mode.as_str(), ?plugins, nice = ai.nice, config = %path.display(), "AI layer");
    Ok(Assistant::start(mode, chain, ai.nice)?)
}
