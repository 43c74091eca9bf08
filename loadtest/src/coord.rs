//! Running a scenario over worker processes: spawn, wait until every worker is connected,
//! start them together, print a progress line each second, collect their results.
//!
//! Workers speak JSON lines on stdout: `{"ready":true}` once connected, then (after `go` on
//! stdin) `{"progress":{...}}` each second and one `{"result":{...}}`; a worker that cannot
//! start prints `{"fatal":"..."}` and exits, and its message becomes the run's error. Each
//! worker reports its own CPU time so a saturated client is called out, not mistaken for a
//! slow server.

use anyhow::{bail, Context};
use clap::Args;
use loadtest::{host, procfs, slo};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Options every multi-process scenario shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds to wait for outstanding answers at the end; what is still missing is lost.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Worker processes (each has its own open-files limit); load is split between them.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Pin worker i to the i-th core of this list (e.g. `1` or `2-3`); unset: not pinned.
    #[arg(long)]
    pub cores: Option<String>,
    /// Server PIDs (comma-separated) whose CPU time is measured over the window.
    #[arg(long)]
    pub server_pids: Option<String>,
    /// Write the full result (settings, counts, percentiles, host facts) as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Objectives, e.g. 'relay_p99<5ms,lost=0'; the exit status is 1 when one is missed.
    #[arg(long)]
    pub slo: Option<String>,
}

impl Common {
    pub fn validate(&self) -> anyhow::Result<(Vec<u32>, Vec<usize>, Vec<slo::Clause>)> {
        if self.procs == 0 || self.procs > 256 {
            bail!("--procs must be 1..=256");
        }
        if self.duration == 0 || self.duration > 24 * 3600 {
            bail!("--duration must be 1..=86400 seconds");
        }
        let pids = self
            .server_pids
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .with_context(|| format!("--server-pids: `{s}` is not a PID"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for p in &pids {
            if procfs::cpu_seconds(*p).is_err() {
                bail!("--server-pids: no process {p}");
            }
        }
        let cores = match &self.cores {
            None => Vec::new(),
            Some(list) => parse_cores(list)?,
        };
        let clauses = match &self.slo {
            None => Vec::new(),
            Some(s) => slo::parse(s)?,
        };
        Ok((pids, cores, clauses))
    }
}

fn parse_cores(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let bad = || anyhow::anyhow!("--cores: `{part}` is not a core or a range like 2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(c) = out.iter().find(|c| **c >= n) {
        bail!("--cores: core {c} does not exist ({n} cores)");
    }
    Ok(out)
}

/// The WebSocket settings of every load client. The read buffer matters most: tungstenite
/// zero-fills its free space before each read, and at the 128 KiB default that memset was
/// 38% of a chat worker's CPU (perf), enough to make the client the bottleneck.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
}

/// The environment variable naming the CA file (PEM) that `wss://` targets are checked
/// against: set by `--ca`, inherited by the worker processes.
pub const CA_ENV: &str = "LOADTEST_CA";

/// The TLS connector for `wss://` targets: trusts the CA file of [`CA_ENV`] alone (load
/// goes to loopback test servers, never to the system's trusted sites). `None` without one.
pub fn tls_connector() -> anyhow::Result<Option<tokio_tungstenite::Connector>> {
    static CONFIG: std::sync::OnceLock<Option<std::sync::Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone().map(tokio_tungstenite::Connector::Rustls));
    }
    let config = match std::env::var_os(CA_ENV) {
        None => None,
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(&path)
                .with_context(|| format!("--ca {}", path.to_string_lossy()))?
            {
                roots
                    .add(cert.with_context(|| format!("--ca {}", path.to_string_lossy()))?)
                    .context("--ca: not a CA certificate")?;
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(std::sync::Arc::new(config))
        }
    };
    let config = CONFIG.get_or_init(|| config).clone();
    Ok(config.map(tokio_tungstenite::Connector::Rustls))
}

/// `ws://` or `wss://` (with `--ca`): the rest of the URL.
pub fn strip_scheme(url: &str) -> anyhow::Result<&str> {
    if let Some(rest) = url.strip_prefix("wss://") {
        if std::env::var_os(CA_ENV).is_none() {
            bail!("a wss:// URL needs --ca FILE, the CA its certificate is checked against");
        }
        return Ok(rest);
    }
    url.strip_prefix("ws://")
        .context("--url must start with ws:// or wss:// (e.g. ws://127.0.0.1:8080)")
}

/// Checks that a URL is `ws://IP:port[/path]` (or `wss://`) on loopback; returns the address.
pub fn loopback_target(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = strip_scheme(url)?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr: std::net::SocketAddr = hostport
        .parse()
        .with_context(|| format!("--url: `{hostport}` is not IP:port"))?;
    if !addr.ip().is_loopback() {
        bail!("{addr}: load may only target loopback addresses (127.0.0.0/8, ::1)");
    }
    // Fail fast and clearly when nothing listens there.
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("cannot connect to {addr}: is the server running?"))?;
    Ok(addr)
}

/// What a run collected.
pub struct Run {
    pub results: Vec<Value>,
    pub window_s: f64,
    pub server_cpu_s: f64,
}

/// Spawns one worker per argument list, runs them for `duration` seconds after all are
/// ready, and returns their results. `progress` turns the workers' latest progress reports
/// into the line printed each second.
pub fn run_workers(
    worker_args: Vec<Vec<String>>,
    cores: &[usize],
    duration: u64,
    drain: u64,
    server_pids: &[u32],
    progress: impl Fn(&[Value], f64) -> String,
) -> anyhow::Result<Run> {
    let exe = std::env::current_exe()?;
    let procs = worker_args.len();
    let mut children = Vec::new();
    for (i, args) in worker_args.into_iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args(&args);
        if !cores.is_empty() {
            cmd.args(["--core", &cores[i % cores.len()].to_string()]);
        }
        children.push(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?);
    }
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Value)>();
    let mut stdins = Vec::new();
    for (i, c) in children.iter_mut().enumerate() {
        stdins.push(c.stdin.take().expect("piped"));
        let out = c.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send((i, v));
                }
            }
        });
    }
    drop(tx);
    let fatal = |v: &Value| v.get("fatal").and_then(Value::as_str).map(str::to_owned);
    let mut ready = 0;
    let connect_deadline = Instant::now() + Duration::from_secs(180);
    while ready < procs {
        let left = connect_deadline.saturating_duration_since(Instant::now());
        let (_, v) = match rx.recv_timeout(left) {
            Ok(m) => m,
            Err(_) => bail!("workers did not connect within 180 s"),
        };
        if let Some(msg) = fatal(&v) {
            bail!("{msg}");
        }
        if v.get("ready").is_some() {
            ready += 1;
        }
    }
    let cpu = || -> f64 {
        server_pids
            .iter()
            .filter_map(|p| procfs::cpu_seconds(*p).ok())
            .sum()
    };
    let cpu0 = cpu();
    let started = Instant::now();
    for s in &mut stdins {
        s.write_all(b"go\n")?;
        s.flush()?;
    }
    let mut latest = vec![Value::Null; procs];
    let mut results: Vec<Option<Value>> = vec![None; procs];
    let mut server_cpu_s = None;
    let mut next_line = started + Duration::from_secs(1);
    let end = started + Duration::from_secs(duration + drain + 60);
    while results.iter().any(Option::is_none) {
        let now = Instant::now();
        if now >= end {
            bail!("workers did not finish in time");
        }
        if server_cpu_s.is_none() && now >= started + Duration::from_secs(duration) {
            server_cpu_s = Some(cpu() - cpu0);
        }
        if now >= next_line {
            if now <= started + Duration::from_secs(duration + drain) {
                eprintln!(
                    "[{:>4.0}s] {}",
                    started.elapsed().as_secs_f64(),
                    progress(&latest, started.elapsed().as_secs_f64())
                );
            }
            next_line += Duration::from_secs(1);
        }
        match rx.recv_timeout(
            next_line
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        ) {
            Ok((i, v)) => {
                if let Some(msg) = fatal(&v) {
                    bail!("worker {i}: {msg}");
                }
                if let Some(p) = v.get("progress") {
                    latest[i] = p.clone();
                } else if let Some(r) = v.get("result") {
                    results[i] = Some(r.clone());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let window_s = (started.elapsed().as_secs_f64()).min(duration as f64);
    let server_cpu_s = server_cpu_s.unwrap_or_else(|| cpu() - cpu0);
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait()?;
        if !status.success() {
            bail!("worker {i} failed: {status}");
        }
    }
    let results: Vec<Value> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("worker {i} reported no result")))
        .collect::<anyhow::Result<_>>()?;
    for (i, r) in results.iter().enumerate() {
        let (cpu, window) = (
            r["cpu_s"].as_f64().unwrap_or(0.0),
            r["window_s"].as_f64().unwrap_or(1.0),
        );
        if window > 0.0 && cpu / window > host::SATURATED {
            eprintln!(
                "loadtest: warning: worker {i} used {:.0}% of a core; the client may be the bottleneck (add --procs or --cores)",
                100.0 * cpu / window
            );
        }
    }
    Ok(Run {
        results,
        window_s,
        server_cpu_s,
    })
}

/// Sums a numeric field over the workers' results (or progress reports).
pub fn sum(values: &[Value], key: &str) -> u64 {
    values.iter().map(|r| r[key].as_u64().unwrap_or(0)).sum()
}

/// Merges the histogram field `key` of every result.
pub fn merged(values: &[Value], key: &str) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let hs = values
        .iter()
        .filter(|r| r[key].is_string())
        .map(|r| loadtest::hist::decode(r[key].as_str().unwrap_or("")).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(loadtest::hist::merge(&hs))
}

/// The SLO figures of a run, from `(name, value)` pairs.
pub fn figures(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Adds `<name>_p50.._max` (microseconds) for a latency summary to the SLO figures.
pub fn latency_figures(
    figures: &mut BTreeMap<String, f64>,
    name: &str,
    s: &loadtest::hist::Summary,
) {
    for (suffix, v) in [
        ("p50", s.p50),
        ("p90", s.p90),
        ("p99", s.p99),
        ("p999", s.p999),
        ("max", s.max),
    ] {
        figures.insert(format!("{name}_{suffix}"), v as f64);
    }
}

/// Prints a latency line in milliseconds.
pub fn print_latency(label: &str, s: &loadtest::hist::Summary) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{label:<18} p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms ({} samples)",
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.p999),
        ms(s.max),
        s.count
    );
}

/// Judges the SLO, writes the JSON, and turns both into the exit status: 1 when an
/// objective is missed or `failed` (lost/duplicated messages) is true.
pub fn finish(
    mut out: Value,
    figures: &BTreeMap<String, f64>,
    clauses: &[slo::Clause],
    json_path: Option<&std::path::Path>,
    failed: bool,
) -> anyhow::Result<ExitCode> {
    let verdicts = slo::check(clauses, figures)?;
    for v in &verdicts {
        println!("slo {v}");
    }
    let missed = verdicts.iter().any(|v| !v.met);
    out["host"] = host::facts();
    out["slo"] = verdicts
        .iter()
        .map(|v| serde_json::json!({"clause": v.clause, "actual": v.actual, "met": v.met}))
        .collect();
    out["figures"] = serde_json::to_value(figures)?;
    if let Some(p) = json_path {
        std::fs::write(p, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(if missed || failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

// ------------------------------------------------------------------ worker side

/// Pins this worker when asked, reports `ready`, waits for `go`.
pub async fn ready_then_wait_for_go(core: Option<usize>) -> anyhow::Result<()> {
    if let Some(c) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
            eprintln!("loadtest: warning: could not pin a worker to core {c}");
        }
    }
    println!("{}", serde_json::json!({"ready": true}));
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    Ok(())
}

/// Prints one JSON line on stdout (a worker's report).
pub fn emit(kind: &str, v: Value) {
    println!("{}", serde_json::json!({ kind: v }));
    let _ = std::io::stdout().flush();
}

/// Runs a worker's body on a single-threaded runtime (its tasks share `Rc` state); an
/// error becomes a `fatal` report.
pub fn run_worker(
    body: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    Ok(match local.block_on(&rt, body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    })
}

/// Emits `report()` as a progress line every second until aborted.
pub fn spawn_reporter(report: impl Fn() -> Value + 'static) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            emit("progress", report());
        }
    })
}

/// Waits for a worker's tasks, then stops its progress reports.
pub async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    reporter: tokio::task::JoinHandle<()>,
) {
    for t in tasks {
        let _ = t.await;
    }
    reporter.abort();
}

/// Emits a worker's result with the CPU it used since `cpu0` over `window_s` seconds (the
/// coordinator warns when that is close to a whole core).
pub fn emit_result(mut r: Value, cpu0: f64, window_s: f64) {
    r["cpu_s"] = serde_json::json!(host::own_cpu_seconds() - cpu0);
    r["window_s"] = serde_json::json!(window_s);
    emit("result", r);
}

/// A worker that cannot start says why, in a form the coordinator passes on.
pub fn fatal(e: &anyhow::Error) -> ExitCode {
    emit("fatal", Value::String(format!("{e:#}")));
    ExitCode::from(2)
}
