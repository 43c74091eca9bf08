//! The `chat` scenario: a customer-service mix. A agents and V visitors; each visitor
//! opens a conversation and sends messages at a steady rate; agents answer a share of them.
//! Measured: ack latency (send -> ack, so: durably stored), relay latency (send -> receipt
//! by the agent), delivered/s, and lost and duplicated messages (both must be zero).
//!
//! Bounded: it runs for `--duration` seconds, then waits at most `--drain` seconds for
//! outstanding acks; anything unacked then is counted lost.

use anyhow::{bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use loadtest::{hist, procfs};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Clone)]
pub struct ChatArgs {
    /// Gateway base URL, e.g. ws://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// File with the gateway's token secret (to mint agent tokens).
    #[arg(long)]
    secret_file: std::path::PathBuf,
    #[arg(long, default_value_t = 10)]
    agents: usize,
    #[arg(long, default_value_t = 100)]
    visitors: usize,
    /// Messages per second per visitor.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Share of visitor messages an agent answers (0..=1).
    #[arg(long, default_value_t = 0.0)]
    replies: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds to wait for outstanding acks at the end.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Worker processes (agents and visitors are split between them).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// Server PIDs (comma-separated) whose CPU time is reported per message.
    #[arg(long)]
    server_pids: Option<String>,
    /// Write the full result as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Args, Clone)]
pub struct ChatWorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    secret_file: std::path::PathBuf,
    #[arg(long)]
    agents: usize,
    #[arg(long)]
    agent_prefix: String,
    #[arg(long)]
    visitors: usize,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    replies: f64,
    #[arg(long)]
    duration: u64,
    #[arg(long)]
    drain: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Default)]
struct Stats {
    sent: u64,
    acked: u64,
    dup_acks: u64,
    relayed: u64,
    dup_relays: u64,
    errors: HashMap<String, u64>,
    ack_hist: Option<hdrhistogram::Histogram<u64>>,
    relay_hist: Option<hdrhistogram::Histogram<u64>>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<(Ws, Value)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .context("no welcome")?;
    let welcome = match first {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str())?,
        other => bail!("not a Switchboard gateway (first frame {other:?})"),
    };
    if welcome["type"] != "welcome" || welcome["server"] != "switchboard" {
        bail!("not a Switchboard gateway (first frame {welcome})");
    }
    Ok((ws, welcome))
}

pub fn work(a: ChatWorkerArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker(a))
}

async fn worker(a: ChatWorkerArgs) -> anyhow::Result<ExitCode> {
    let secret = std::fs::read_to_string(&a.secret_file)
        .with_context(|| format!("reading {}", a.secret_file.display()))?;
    let signer = TokenSigner::new(secret.trim().as_bytes()).context("secret")?;
    let stats = Rc::new(RefCell::new(Stats {
        ack_hist: Some(hist::new_hist()),
        relay_hist: Some(hist::new_hist()),
        ..Stats::default()
    }));
    // Connect everyone first, so the measured window is steady traffic only.
    let expiry = now_us() / 1_000_000 + 24 * 3600;
    let mut agents = Vec::new();
    for i in 0..a.agents {
        let token = signer.mint(TokenKind::Agent, &format!("{}{i}", a.agent_prefix), expiry);
        let url = format!("{}/ws/agent?token={token}&client=api", a.url);
        agents.push(connect(&url).await?.0);
    }
    let mut visitors = Vec::new();
    for _ in 0..a.visitors {
        let url = format!("{}/ws/visitor?client=api", a.url);
        visitors.push(connect(&url).await?.0);
    }
    println!("{}", json!({"ready": true}));
    std::io::Write::flush(&mut std::io::stdout())?;
    // Wait for the coordinator's go (a line on stdin).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    let stop_at = Instant::now() + Duration::from_secs(a.duration);
    let drain_until = stop_at + Duration::from_secs(a.drain);
    let mut tasks = Vec::new();
    for ws in agents {
        tasks.push(tokio::task::spawn_local(agent(
            ws,
            stats.clone(),
            a.replies,
            drain_until,
        )));
    }
    let body = "x".repeat(a.size.max(1));
    let n = visitors.len();
    for (i, ws) in visitors.into_iter().enumerate() {
        let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
        // Spread visitors over the period so the load is steady.
        let offset = period.mul_f64(i as f64 / n.max(1) as f64);
        tasks.push(tokio::task::spawn_local(visitor(
            ws,
            stats.clone(),
            body.clone(),
            period,
            offset,
            stop_at,
            drain_until,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let s = stats.borrow();
    println!(
        "{}",
        json!({"result": {
            "sent": s.sent, "acked": s.acked, "dup_acks": s.dup_acks, "relayed": s.relayed, "dup_relays": s.dup_relays,
            "errors": s.errors,
            "ack": hist::encode(s.ack_hist.as_ref().unwrap()),
            "relay": hist::encode(s.relay_hist.as_ref().unwrap()),
        }})
    );
    Ok(ExitCode::SUCCESS)
}

async fn visitor(
    mut ws: Ws,
    stats: Rc<RefCell<Stats>>,
    body: String,
    period: Duration,
    offset: Duration,
    stop_at: Instant,
    drain_until: Instant,
) {
    let mut pending: HashMap<String, u64> = HashMap::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut next = Instant::now() + offset;
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        if now >= stop_at && pending.is_empty() || now >= drain_until {
            break;
        }
        let sleep = if now < stop_at {
            next.saturating_duration_since(now)
        } else {
            drain_until - now
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep), if now < stop_at => {
                n += 1;
                let t = now_us();
                let cid = format!("{n}-{t}");
                let frame = json!({"type":"msg","cid":cid,"body":body}).to_string();
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
                pending.insert(cid, t);
                stats.borrow_mut().sent += 1;
                next += period;
            }
            m = ws.next() => {
                let Some(Ok(Message::Text(t))) = m else {
                    if matches!(m, None | Some(Err(_))) { break } else { continue }
                };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                let mut s = stats.borrow_mut();
                match v["type"].as_str() {
                    Some("ack") => {
                        let cid = v["cid"].as_str().unwrap_or_default();
                        if let Some(t0) = pending.remove(cid) {
                            s.acked += 1;
                            s.ack_hist.as_mut().unwrap().saturating_record(now_us().saturating_sub(t0));
                            acked.insert(cid.to_string());
                        } else if acked.contains(cid) {
                            s.dup_acks += 1;
                        }
                    }
                    Some("error") => {
                        *s.errors.entry(v["code"].as_str().unwrap_or("?").to_string()).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

async fn agent(mut ws: Ws, stats: Rc<RefCell<Stats>>, replies: f64, drain_until: Instant) {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut n = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while Instant::now() < drain_until {
        let m = tokio::time::timeout(drain_until - Instant::now(), ws.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = m else {
            match m {
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
        };
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        match v["type"].as_str() {
            Some("assigned") => {
                let r = json!({"type":"resume","conv":v["conv"],"last_seq":0}).to_string();
                let _ = ws.send(Message::text(r)).await;
            }
            Some("msg") if v["from"].as_str().is_some_and(|f| f.starts_with('v')) => {
                let key = (
                    v["conv"].as_str().unwrap_or_default().to_string(),
                    v["seq"].as_u64().unwrap_or(0),
                );
                if !seen.insert(key) {
                    stats.borrow_mut().dup_relays += 1;
                    continue;
                }
                let sent = v["cid"]
                    .as_str()
                    .and_then(|c| c.split('-').nth(1))
                    .and_then(|t| t.parse::<u64>().ok());
                {
                    let mut s = stats.borrow_mut();
                    s.relayed += 1;
                    if let Some(t0) = sent {
                        s.relay_hist
                            .as_mut()
                            .unwrap()
                            .saturating_record(now_us().saturating_sub(t0));
                    }
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 10_000) as f64 / 10_000.0 < replies {
                    n += 1;
                    let r = json!({"type":"msg","cid":format!("r{n}"),"body":"thanks, looking into it","conv":v["conv"]}).to_string();
                    let _ = ws.send(Message::text(r)).await;
                }
            }
            _ => {}
        }
    }
}

pub fn coordinate(a: ChatArgs) -> anyhow::Result<ExitCode> {
    let rest = a
        .url
        .strip_prefix("ws://")
        .context("--url must start with ws://")?;
    let host: std::net::SocketAddr = rest
        .trim_end_matches('/')
        .parse()
        .context("--url: give the gateway as ws://IP:port")?;
    if !host.ip().is_loopback() {
        bail!("{host}: load may only target loopback addresses");
    }
    if a.procs == 0 || a.agents < a.procs || a.visitors < a.procs {
        bail!("--procs must be at least 1 and at most --agents and --visitors");
    }
    let pids: Vec<u32> = a
        .server_pids
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--server-pids")?;
    let cpu = |pids: &[u32]| -> f64 {
        pids.iter()
            .filter_map(|p| procfs::cpu_seconds(*p).ok())
            .sum()
    };
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 0..a.procs {
        let share = |n: usize| n / a.procs + usize::from(w < n % a.procs);
        let child = Command::new(&exe)
            .args([
                "__chat_worker",
                "--url",
                a.url.trim_end_matches('/'),
                "--secret-file",
            ])
            .arg(&a.secret_file)
            .args([
                "--agents",
                &share(a.agents).to_string(),
                "--agent-prefix",
                &format!("lt{w}-"),
            ])
            .args([
                "--visitors",
                &share(a.visitors).to_string(),
                "--rate",
                &a.rate.to_string(),
                "--size",
                &a.size.to_string(),
            ])
            .args([
                "--replies",
                &a.replies.to_string(),
                "--duration",
                &a.duration.to_string(),
                "--drain",
                &a.drain.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        children.push(child);
    }
    // Every worker connects, says ready, and waits; then the window starts for all.
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let mut stdins = Vec::new();
    for c in &mut children {
        stdins.push(c.stdin.take().expect("piped"));
        let out = c.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
    }
    drop(tx);
    let mut ready = 0;
    let mut results = Vec::new();
    while ready < a.procs {
        let v = rx
            .recv_timeout(Duration::from_secs(120))
            .context("workers did not connect in time")?;
        if v.get("ready").is_some() {
            ready += 1;
        }
    }
    let cpu0 = cpu(&pids);
    let started = Instant::now();
    for s in &mut stdins {
        std::io::Write::write_all(s, b"go\n")?;
    }
    std::thread::sleep(Duration::from_secs(a.duration));
    let cpu_used = cpu(&pids) - cpu0;
    let elapsed = started.elapsed().as_secs_f64();
    while let Ok(v) = rx.recv_timeout(Duration::from_secs(a.drain + 30)) {
        if let Some(r) = v.get("result") {
            results.push(r.clone());
            if results.len() == a.procs {
                break;
            }
        }
    }
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            bail!("a worker failed: {status}");
        }
    }
    if results.len() < a.procs {
        bail!("not every worker reported");
    }
    let sum = |k: &str| {
        results
            .iter()
            .map(|r| r[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let (sent, acked, relayed) = (sum("sent"), sum("acked"), sum("relayed"));
    let (dup_acks, dup_relays) = (sum("dup_acks"), sum("dup_relays"));
    let mut errors: HashMap<String, u64> = HashMap::new();
    for r in &results {
        for (k, v) in r["errors"].as_object().into_iter().flatten() {
            *errors.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
    let decode = |k: &str| -> anyhow::Result<Vec<hdrhistogram::Histogram<u64>>> {
        results
            .iter()
            .map(|r| hist::decode(r[k].as_str().unwrap_or("")).map_err(anyhow::Error::msg))
            .collect()
    };
    let ack = hist::summary(&hist::merge(&decode("ack")?));
    let relay = hist::summary(&hist::merge(&decode("relay")?));
    let lost = sent - acked;
    let rate = acked as f64 / a.duration as f64;
    println!(
        "chat: {} agents, {} visitors at {}/s each ({} msg/s offered), {} B bodies, {} s",
        a.agents,
        a.visitors,
        a.rate,
        a.visitors as f64 * a.rate,
        a.size,
        a.duration
    );
    println!("sent {sent}, acked (stored) {acked} = {rate:.0}/s, relayed to agents {relayed}, lost {lost}, duplicated {}", dup_acks + dup_relays);
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "ack latency ms:   p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        ms(ack.p50),
        ms(ack.p90),
        ms(ack.p99),
        ms(ack.p999),
        ms(ack.max)
    );
    println!(
        "relay latency ms: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        ms(relay.p50),
        ms(relay.p90),
        ms(relay.p99),
        ms(relay.p999),
        ms(relay.max)
    );
    if !errors.is_empty() {
        println!("errors: {errors:?}");
    }
    let total_msgs = acked + sum("relayed");
    if !pids.is_empty() {
        println!(
            "server CPU in the steady window: {cpu_used:.2} s over {elapsed:.1} s = {:.1} us per message sent (relayed, acked, stored)",
            cpu_used * 1e6 / sent.max(1) as f64
        );
    }
    let out = json!({
        "scenario": "chat",
        "settings": {"agents": a.agents, "visitors": a.visitors, "rate_per_visitor": a.rate, "size": a.size, "replies": a.replies, "duration_s": a.duration, "procs": a.procs},
        "sent": sent, "acked": acked, "relayed": relayed, "lost": lost, "duplicated": dup_acks + dup_relays,
        "stored_per_second": rate, "ack_us": ack, "relay_us": relay, "errors": errors,
        "server_cpu_seconds": cpu_used, "server_cpu_us_per_message": cpu_used * 1e6 / sent.max(1) as f64, "window_seconds": elapsed,
        "messages_total": total_msgs,
    });
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(if lost == 0 && dup_acks + dup_relays == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
