//! The `connect` scenario: many idle WebSocket connections.
//!
//! The coordinator spawns worker processes, each opening its share of connections from its
//! share of source addresses, then holding them (reading, so pings are answered) until told
//! to stop. Workers report progress and a final histogram as JSON lines on stdout.

use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use loadtest::{hist, procfs, sources};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// WebSocket URL, e.g. ws://127.0.0.1:8080/ws/visitor?client=web
    #[arg(long)]
    url: String,
    /// Connections to open in total.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: u64,
    /// Connections opened per second, in total.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// Source addresses, e.g. 127.0.0.2-127.0.0.40.
    #[arg(long, default_value = "127.0.0.1")]
    source: String,
    /// The server's PID, to report its memory and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Accept any WebSocket server (do not require Switchboard's welcome frame).
    #[arg(long)]
    any_server: bool,
    /// Give up if not every connection is open after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Write the full result as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Objectives, e.g. 'failed=0,handshake_p99<20ms,bytes_per_connection<6144'; the exit
    /// status is 1 when one is missed.
    #[arg(long)]
    slo: Option<String>,
}

#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    rate: u64,
    #[arg(long)]
    sources: String,
    #[arg(long)]
    any_server: bool,
}

fn parse_target(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = crate::coord::strip_scheme(url)?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = hostport
        .parse()
        .with_context(|| format!("`{hostport}`: give the server as IP:port"))?;
    if !addr.ip().is_loopback() {
        bail!("{addr}: load may only target loopback addresses (127.0.0.0/8, ::1)");
    }
    Ok(addr)
}

// ------------------------------------------------------------------ worker

pub fn work(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(worker(a))
}

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    failed: AtomicU64,
}

async fn worker(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    let target = parse_target(&a.url)?;
    let sources: Vec<Ipv4Addr> = sources::parse_sources(&a.sources).map_err(anyhow::Error::msg)?;
    let counts = Arc::new(Counts::default());
    let errors = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let histogram = Arc::new(std::sync::Mutex::new(hist::new_hist()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.count {
        let due = start + Duration::from_secs_f64(i as f64 / a.rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
        let (c, errors, histogram, stop) = (
            counts.clone(),
            errors.clone(),
            histogram.clone(),
            stop.clone(),
        );
        let src = sources[i as usize % sources.len()];
        let url = a.url.clone();
        let any = a.any_server;
        tasks.spawn(async move {
            let t0 = Instant::now();
            match open(&url, target, src, any).await {
                Ok(mut ws) => {
                    histogram.lock().unwrap().saturating_record(t0.elapsed().as_micros() as u64);
                    c.connected.fetch_add(1, Ordering::Relaxed);
                    // Hold: read (answering pings) until told to stop.
                    let stopped = stop.notified();
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            m = ws.next() => if m.is_none() || m.is_some_and(|r| r.is_err()) {
                                *errors.lock().unwrap().entry("closed_by_server".into()).or_default() += 1;
                                break;
                            },
                        }
                    }
                    let _ = ws.close(None).await;
                }
                Err(kind) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    *errors.lock().unwrap().entry(kind).or_default() += 1;
                }
            }
        });
        if i % 256 == 0 {
            report_progress(&counts);
        }
    }
    // Wait for every attempt to finish.
    while counts.connected.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < a.count
    {
        report_progress(&counts);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report_progress(&counts);
    println!("{}", json!({"ready": true}));
    // Hold until the coordinator says stop (a line on stdin, or EOF).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    stop.notify_waiters();
    while tasks.join_next().await.is_some() {}
    let h = histogram.lock().unwrap();
    println!(
        "{}",
        json!({"result": {
            "connected": counts.connected.load(Ordering::Relaxed),
            "failed": counts.failed.load(Ordering::Relaxed),
            "errors": *errors.lock().unwrap(),
            "handshake": hist::encode(&h),
        }})
    );
    Ok(ExitCode::SUCCESS)
}

fn report_progress(c: &Counts) {
    println!(
        "{}",
        json!({"progress": {"connected": c.connected.load(Ordering::Relaxed), "failed": c.failed.load(Ordering::Relaxed)}})
    );
    let _ = std::io::stdout().flush();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens one connection from `src`; on failure returns a short error kind.
async fn open(
    url: &str,
    target: SocketAddr,
    src: Ipv4Addr,
    any_server: bool,
) -> Result<Ws, String> {
    let attempt = async {
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
        sock.bind(SocketAddr::new(src.into(), 0))
            .map_err(|e| format!("bind: {}", e.kind()))?;
        let stream = sock
            .connect(target)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let tls = crate::coord::tls_connector().map_err(|e| format!("tls: {e}"))?;
        let (mut ws, _) = tokio_tungstenite::client_async_tls_with_config(
            url,
            stream,
            Some(crate::coord::ws_config()),
            tls,
        )
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                format!("http_{}", r.status().as_u16())
            }
            other => format!("handshake: {other}"),
        })?;
        if !any_server {
            let first = ws.next().await;
            let ok = matches!(&first, Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))
                if serde_json::from_str::<Value>(t.as_str()).is_ok_and(|v| v["type"] == "welcome" && v["server"] == "switchboard"));
            if !ok {
                return Err("not_switchboard".to_string());
            }
        }
        Ok(ws)
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

// ------------------------------------------------------------------ coordinator

struct WorkerHandle {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

enum Report {
    Progress {
        w: usize,
        connected: u64,
        failed: u64,
    },
    Ready,
    Result(usize, Value),
    Exited(usize),
}

pub fn coordinate(a: ConnectArgs) -> anyhow::Result<ExitCode> {
    let target = parse_target(&a.url)?;
    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .with_context(|| format!("cannot connect to {target}: is the server running?"))?;
    let clauses = match &a.slo {
        Some(s) => loadtest::slo::parse(s)?,
        None => Vec::new(),
    };
    let all_sources = sources::parse_sources(&a.source).map_err(anyhow::Error::msg)?;
    if a.procs == 0 || a.procs > 256 {
        bail!("--procs must be 1..=256");
    }
    if a.connections == 0 {
        bail!("-n must be at least 1");
    }
    let ports_needed = a.connections / all_sources.len() as u64;
    if ports_needed > 28_000 {
        eprintln!("loadtest: warning: {ports_needed} connections per source address may exhaust ephemeral ports; add --source addresses");
    }
    let per_proc_limit = 19_500;
    if a.connections / a.procs as u64 > per_proc_limit {
        bail!("{} connections over {} processes exceeds ~{per_proc_limit} per process (open-files limit); raise --procs", a.connections, a.procs);
    }

    let baseline = a.server_pid.map(server_sample).transpose()?;
    let exe = std::env::current_exe()?;
    let (tx, rx) = std::sync::mpsc::channel::<Report>();
    let mut workers = Vec::new();
    for w in 0..a.procs {
        let count =
            a.connections / a.procs as u64 + u64::from((w as u64) < a.connections % a.procs as u64);
        let rate = (a.rate / a.procs as u64).max(1);
        let srcs: Vec<String> = sources::share(&all_sources, w, a.procs)
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut cmd = Command::new(&exe);
        cmd.args([
            "__worker",
            "--url",
            &a.url,
            "--count",
            &count.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--sources", &srcs.join(",")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        if a.any_server {
            cmd.arg("--any-server");
        }
        let mut child = cmd.spawn().context("spawning a worker")?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let r = if let Some(p) = v.get("progress") {
                    Report::Progress {
                        w,
                        connected: p["connected"].as_u64().unwrap_or(0),
                        failed: p["failed"].as_u64().unwrap_or(0),
                    }
                } else if v.get("ready").is_some() {
                    Report::Ready
                } else if let Some(r) = v.get("result") {
                    Report::Result(w, r.clone())
                } else {
                    continue;
                };
                if tx.send(r).is_err() {
                    return;
                }
            }
            let _ = tx.send(Report::Exited(w));
        });
        workers.push(WorkerHandle { child, stdin });
    }
    drop(tx);

    let started = Instant::now();
    let mut progress = vec![(0u64, 0u64); a.procs];
    let mut ready = 0;
    let mut last_print = Instant::now();
    while ready < a.procs {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Report::Progress {
                w,
                connected,
                failed,
            }) => progress[w] = (connected, failed),
            Ok(Report::Ready) => ready += 1,
            Ok(Report::Exited(w)) => bail!("worker {w} exited early"),
            Ok(Report::Result(..)) => {}
            Err(_) => {}
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            print_progress(&progress, a.connections, started, a.server_pid);
        }
        if started.elapsed() > Duration::from_secs(a.timeout) {
            bail!("not every connection was attempted within {} s", a.timeout);
        }
    }
    let ramp = started.elapsed();
    print_progress(&progress, a.connections, started, a.server_pid);
    // Let the server settle, then measure it while everything is held.
    std::thread::sleep(Duration::from_secs(2));
    let loaded = a.server_pid.map(server_sample).transpose()?;
    let hold_start = Instant::now();
    while hold_start.elapsed() < Duration::from_secs(a.hold) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = a.server_pid.map(server_sample).transpose()?;
    for w in &mut workers {
        let _ = writeln!(w.stdin, "stop");
    }
    let mut results = Vec::new();
    let mut reported = vec![false; a.procs];
    while results.len() < a.procs {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Report::Result(w, v)) => {
                reported[w] = true;
                results.push(v);
            }
            Ok(Report::Exited(w)) if !reported[w] => bail!("worker {w} exited without a result"),
            Ok(_) => {}
            Err(_) => bail!("workers did not report in time"),
        }
    }
    for w in &mut workers {
        let _ = w.child.wait();
    }

    let mut hists = Vec::new();
    let (mut connected, mut failed) = (0, 0);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &results {
        connected += r["connected"].as_u64().unwrap_or(0);
        failed += r["failed"].as_u64().unwrap_or(0);
        if let Some(e) = r["errors"].as_object() {
            for (k, v) in e {
                *errors.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
            }
        }
        hists
            .push(hist::decode(r["handshake"].as_str().unwrap_or("")).map_err(anyhow::Error::msg)?);
    }
    let h = hist::summary(&hist::merge(&hists));
    let mut out = json!({
        "scenario": "connect",
        "settings": {"url": a.url, "connections": a.connections, "rate": a.rate, "procs": a.procs, "sources": all_sources.len(), "hold_s": a.hold},
        "connected": connected,
        "failed": failed,
        "errors": errors,
        "ramp_seconds": ramp.as_secs_f64(),
        "handshakes_per_second": connected as f64 / ramp.as_secs_f64(),
        "handshake_us": h,
    });
    println!();
    println!(
        "connect: {connected} connected, {failed} failed, ramp {:.1} s ({:.0} handshakes/s)",
        ramp.as_secs_f64(),
        connected as f64 / ramp.as_secs_f64()
    );
    println!(
        "handshake latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
        h.p50, h.p90, h.p99, h.p999, h.max
    );
    if !errors.is_empty() {
        println!("errors: {errors:?}");
    }
    if let (Some(b), Some(l), Some(hd)) = (baseline, loaded, held) {
        let per_conn = (l.rss as f64 - b.rss as f64) / connected.max(1) as f64;
        let cpu_idle = hd.cpu - l.cpu;
        println!(
            "server: RSS {:.1} MiB -> {:.1} MiB = {:.0} bytes ({:.2} KiB) per connection; CPU while holding {:.3} s over {} s ({:.2}% of a core)",
            b.rss as f64 / 1048576.0,
            l.rss as f64 / 1048576.0,
            per_conn,
            per_conn / 1024.0,
            cpu_idle,
            a.hold,
            100.0 * cpu_idle / a.hold.max(1) as f64
        );
        out["server"] = json!({
            "rss_before_bytes": b.rss, "rss_loaded_bytes": l.rss, "rss_per_connection_bytes": per_conn,
            "cpu_seconds_ramp": l.cpu - b.cpu, "cpu_seconds_hold": cpu_idle,
        });
    }
    let mut figures = crate::coord::figures(&[
        ("connected", connected as f64),
        ("failed", failed as f64),
        ("rate", connected as f64 / ramp.as_secs_f64()),
    ]);
    crate::coord::latency_figures(&mut figures, "handshake", &h);
    if let Some(per_conn) = out["server"]["rss_per_connection_bytes"].as_f64() {
        figures.insert("bytes_per_connection".into(), per_conn);
    }
    crate::coord::finish(out, &figures, &clauses, a.json.as_deref(), failed > 0)
}

#[derive(Clone, Copy)]
struct ServerSample {
    rss: u64,
    cpu: f64,
}

fn server_sample(pid: u32) -> anyhow::Result<ServerSample> {
    Ok(ServerSample {
        rss: procfs::rss_bytes(pid).with_context(|| format!("reading /proc/{pid}"))?,
        cpu: procfs::cpu_seconds(pid)?,
    })
}

fn print_progress(progress: &[(u64, u64)], total: u64, started: Instant, pid: Option<u32>) {
    let connected: u64 = progress.iter().map(|p| p.0).sum();
    let failed: u64 = progress.iter().map(|p| p.1).sum();
    let rss = pid
        .and_then(|p| procfs::rss_bytes(p).ok())
        .map(|r| format!(" server RSS {:.1} MiB", r as f64 / 1048576.0))
        .unwrap_or_default();
    println!(
        "[{:>5.1}s] connected {connected}/{total} failed {failed}{rss}",
        started.elapsed().as_secs_f64()
    );
}
