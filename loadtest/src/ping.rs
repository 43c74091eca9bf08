//! The `ping` scenario: WebSocket Ping/Pong round trips over N connections, so any RFC 6455
//! server (ours, the bench baseline, someone else's) is measured the same way. Text frames
//! the server sends (Switchboard's `welcome`) are read and ignored.

use crate::coord::{self, Common};
use anyhow::{bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use loadtest::hist;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub const FIGURES: &str =
    "rtt_p50..rtt_max (us unless a unit is given), pings, pongs, lost, failed, rate (pongs/s)";

#[derive(Args, Clone, Debug)]
pub struct PingArgs {
    /// WebSocket URL, e.g. ws://127.0.0.1:8080/ws/visitor?client=api
    #[arg(long)]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Pings per second per connection.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Ping payload bytes (8..=125).
    #[arg(long, default_value_t = 16)]
    size: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone, Debug)]
pub struct PingWorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    conns: usize,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    duration: u64,
    #[arg(long)]
    drain: u64,
    #[arg(long)]
    core: Option<usize>,
}

#[derive(Default)]
struct Counts {
    connections: u64,
    failed: u64,
    pings: u64,
    pongs: u64,
}

pub fn work(a: PingWorkerArgs) -> anyhow::Result<ExitCode> {
    coord::run_worker(worker(a))
}

async fn worker(a: PingWorkerArgs) -> anyhow::Result<()> {
    let counts = Rc::new(RefCell::new(Counts::default()));
    let rtt = Rc::new(RefCell::new(hist::new_hist()));
    let mut conns = Vec::new();
    for _ in 0..a.conns {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            &a.url,
            Some(coord::ws_config()),
            true,
            coord::tls_connector()?,
        )
        .await
        .with_context(|| format!("connecting to {}", a.url))?;
        conns.push(ws);
    }
    counts.borrow_mut().connections = a.conns as u64;
    coord::ready_then_wait_for_go(a.core).await?;
    let cpu0 = loadtest::host::own_cpu_seconds();
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(a.duration);
    let drain_until = stop_at + Duration::from_secs(a.drain);
    let report = {
        let (counts, rtt) = (counts.clone(), rtt.clone());
        move || {
            let c = counts.borrow();
            json!({"connections": c.connections, "failed": c.failed, "pings": c.pings, "pongs": c.pongs, "rtt": hist::encode(&rtt.borrow())})
        }
    };
    let reporter = coord::spawn_reporter(report.clone());
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let n = conns.len().max(1);
    let mut tasks = Vec::new();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let (counts, rtt) = (counts.clone(), rtt.clone());
        let size = a.size;
        tasks.push(tokio::task::spawn_local(async move {
            let mut next = start + period.mul_f64(i as f64 / n as f64);
            let mut outstanding = 0u64;
            loop {
                let now = Instant::now();
                if now >= drain_until || (now >= stop_at && outstanding == 0) {
                    break;
                }
                let wait = if now < stop_at { next.saturating_duration_since(now) } else { drain_until - now };
                tokio::select! {
                    _ = tokio::time::sleep(wait), if now < stop_at => {
                        let mut payload = (start.elapsed().as_micros() as u64).to_be_bytes().to_vec();
                        payload.resize(size, 0);
                        if ws.send(Message::Ping(payload.into())).await.is_err() {
                            counts.borrow_mut().failed += 1;
                            break;
                        }
                        outstanding += 1;
                        counts.borrow_mut().pings += 1;
                        next += period;
                    }
                    m = ws.next() => match m {
                        Some(Ok(Message::Pong(p))) if p.len() >= 8 => {
                            let sent = u64::from_be_bytes(p[..8].try_into().expect("8 bytes"));
                            rtt.borrow_mut().saturating_record((start.elapsed().as_micros() as u64).saturating_sub(sent));
                            outstanding = outstanding.saturating_sub(1);
                            counts.borrow_mut().pongs += 1;
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            counts.borrow_mut().failed += 1;
                            break;
                        }
                    },
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    coord::join_all(tasks, reporter).await;
    coord::emit_result(report(), cpu0, a.duration as f64);
    Ok(())
}

pub fn coordinate(a: PingArgs) -> anyhow::Result<ExitCode> {
    let (pids, cores, clauses) = a.common.validate()?;
    coord::loopback_target(&a.url)?;
    let c = &a.common;
    if a.conns < c.procs {
        bail!("--conns must be at least --procs");
    }
    if !(8..=125).contains(&a.size) {
        bail!("--size must be 8..=125 bytes (a control frame's payload)");
    }
    if !(a.rate > 0.0 && a.rate <= 10_000.0) {
        bail!("--rate must be in (0, 10000] pings per second per connection");
    }
    let args = (0..c.procs)
        .map(|w| {
            let share = a.conns / c.procs + usize::from(w < a.conns % c.procs);
            [
                "__ping_worker".to_string(),
                "--url".into(),
                a.url.clone(),
                "--conns".into(),
                share.to_string(),
                "--rate".into(),
                a.rate.to_string(),
                "--size".into(),
                a.size.to_string(),
                "--duration".into(),
                c.duration.to_string(),
                "--drain".into(),
                c.drain.to_string(),
            ]
            .to_vec()
        })
        .collect();
    let run = coord::run_workers(args, &cores, c.duration, c.drain, &pids, |latest, _| {
        let p99 = coord::merged(latest, "rtt")
            .map(|h| hist::summary(&h).p99)
            .unwrap_or(0);
        format!(
            "conns {} | pings {} | pongs {} | rtt p99 {:.2} ms | failed {}",
            coord::sum(latest, "connections"),
            coord::sum(latest, "pings"),
            coord::sum(latest, "pongs"),
            p99 as f64 / 1000.0,
            coord::sum(latest, "failed")
        )
    })?;
    let r: &[Value] = &run.results;
    let (pings, pongs, failed) = (
        coord::sum(r, "pings"),
        coord::sum(r, "pongs"),
        coord::sum(r, "failed"),
    );
    let rtt = hist::summary(&coord::merged(r, "rtt")?);
    let lost = pings.saturating_sub(pongs);
    let rate = pongs as f64 / c.duration as f64;
    println!("ping: {} connections x {}/s, {} B payload, {} s: {pings} pings, {pongs} pongs ({rate:.0}/s), lost {lost}, failed connections {failed}", a.conns, a.rate, a.size, c.duration);
    coord::print_latency("round trip", &rtt);
    let cpu_us = run.server_cpu_s * 1e6 / pongs.max(1) as f64;
    if !pids.is_empty() {
        println!(
            "server CPU: {:.2} s = {cpu_us:.1} us per ping",
            run.server_cpu_s
        );
    }
    let mut figures = coord::figures(&[
        ("pings", pings as f64),
        ("pongs", pongs as f64),
        ("lost", lost as f64),
        ("failed", failed as f64),
        ("rate", rate),
    ]);
    coord::latency_figures(&mut figures, "rtt", &rtt);
    let out = json!({
        "scenario": "ping",
        "settings": {"url": a.url, "conns": a.conns, "rate_per_conn": a.rate, "size": a.size, "duration_s": c.duration, "procs": c.procs},
        "pings": pings, "pongs": pongs, "lost": lost, "failed": failed, "rtt_us": rtt, "pongs_per_second": rate,
        "server_cpu_seconds": run.server_cpu_s, "server_cpu_us_per_ping": cpu_us,
    });
    coord::finish(out, &figures, &clauses, c.json.as_deref(), false)
}
