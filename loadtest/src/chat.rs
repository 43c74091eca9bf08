//! The `chat` and `churn` scenarios: a customer-service mix. A agents and V visitors; each
//! visitor opens a conversation and sends messages at a steady rate; agents answer a share
//! of them. Measured: ack latency (send -> ack, so: durably stored), relay latency (send ->
//! receipt by the agent), stored messages per second, lost and duplicated messages.
//!
//! `churn` is the same mix with visitors that drop their connection every few seconds,
//! reconnect with their token, `resume` from their last seq and resend what was not acked;
//! the ledgers then prove nothing was missed or stored twice across reconnects.
//!
//! In both, a client whose connection ends (a gateway restarted mid-run) reconnects the
//! same way, agents too, so a rolling restart under load is measured, not fatal.
//!
//! Over our usual ~600 lines: the visitor and agent loops, their shared counters and the
//! coordinator's table are one scenario, read together; the ledgers' rules are apart
//! (`ledger.rs`).
//!
//! Bounded: load for `--duration` seconds, then at most `--drain` seconds for outstanding
//! acks; anything unacked then is counted lost.

use crate::coord::{self, Common};
use anyhow::{bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use loadtest::hist;
use loadtest::ledger::{Ack, ReceiverLedger, SenderLedger};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use tokio_tungstenite::tungstenite::Message;

/// Figures `--slo` may name in `chat` and `churn`.
pub const FIGURES: &str = "ack_p50..ack_max, relay_p50..relay_max (us unless a unit is given), sent, acked, rate (stored/s), lost, duplicated, undelivered, errors, reconnects";

#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    /// Gateway base URL, e.g. ws://127.0.0.1:8080; several, comma-separated, for the nodes
    /// of a cluster: clients are spread over them, and a client whose node goes away
    /// reconnects to the next.
    #[arg(long)]
    url: String,
    /// Agents connect to these URLs instead (comma-separated): with visitors on `--url`
    /// and agents on another node, every message crosses nodes.
    #[arg(long)]
    agent_url: Option<String>,
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
    /// Visitors write these texts instead of `--size` bytes of filler: one per line (a
    /// TSV's last column), visitor i writing line i (mod their count). For an AI layer,
    /// whose cost depends on what is written.
    #[arg(long)]
    texts: Option<std::path::PathBuf>,
    /// Share of visitor messages an agent answers (0..=1).
    #[arg(long, default_value_t = 0.0)]
    replies: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    chat: ChatArgs,
    /// Each visitor drops its connection and resumes this often (seconds).
    #[arg(long, default_value_t = 2.0)]
    reconnect_every: f64,
}

#[derive(Args, Clone, Debug)]
pub struct ChatWorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    agent_url: Option<String>,
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
    texts: Option<std::path::PathBuf>,
    #[arg(long)]
    replies: f64,
    #[arg(long)]
    duration: u64,
    #[arg(long)]
    drain: u64,
    /// Seconds between a visitor's reconnects; 0: never.
    #[arg(long, default_value_t = 0.0)]
    reconnect_every: f64,
    /// Index of this worker's first visitor among all (picks its lines of `--texts`).
    #[arg(long, default_value_t = 0)]
    visitor_offset: usize,
    #[arg(long)]
    core: Option<usize>,
}

/// The non-empty lines of `path` (a TSV's last column; `#` lines are comments).
fn read_texts(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--texts {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit('\t').next().unwrap_or(l).trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        bail!("--texts {}: no lines", path.display());
    }
    Ok(lines)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Stats {
    connections: u64,
    sent: u64,
    acked: u64,
    dup_acks: u64,
    lost: u64,
    relayed: u64,
    dup_relays: u64,
    gaps: u64,
    reconnects: u64,
    errors: BTreeMap<String, u64>,
    ack_hist: hdrhistogram::Histogram<u64>,
    relay_hist: hdrhistogram::Histogram<u64>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            connections: 0,
            sent: 0,
            acked: 0,
            dup_acks: 0,
            lost: 0,
            relayed: 0,
            dup_relays: 0,
            gaps: 0,
            reconnects: 0,
            errors: BTreeMap::new(),
            ack_hist: hist::new_hist(),
            relay_hist: hist::new_hist(),
        }
    }

    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    fn report(&self) -> Value {
        json!({
            "connections": self.connections, "sent": self.sent, "acked": self.acked,
            "dup_acks": self.dup_acks, "lost": self.lost, "relayed": self.relayed,
            "dup_relays": self.dup_relays, "gaps": self.gaps, "reconnects": self.reconnects,
            "errors": self.errors,
            "ack": hist::encode(&self.ack_hist), "relay": hist::encode(&self.relay_hist),
        })
    }
}

/// The fields of a server frame the chat clients look at, borrowed from the text: parsing
/// into a `serde_json::Value` allocated a map per frame, a measurable share of the client's
/// CPU at tens of thousands of frames per second. Unknown fields (the body) are skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    cid: Option<Cow<'a, str>>,
    seq: Option<u64>,
    #[serde(borrow)]
    conv: Option<Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

impl Frame<'_> {
    fn error_code(&self) -> &str {
        self.code.as_deref().unwrap_or("?")
    }
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a connection and checks the first frame is Switchboard's `welcome`.
pub async fn connect(url: &str) -> anyhow::Result<(Ws, Value)> {
    // Errors name the endpoint, never the token in the query.
    let shown = url.split('?').next().unwrap_or(url);
    // TCP_NODELAY: with Nagle on, a client's small frame waits for the ACK of the one
    // before (up to the server's 40 ms delayed ACK), and that wait would be measured as
    // server latency.
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(coord::ws_config()),
        true,
        coord::tls_connector()?,
    )
    .await
    .with_context(|| {
        format!("WebSocket handshake with {shown} failed: is it a Switchboard gateway?")
    })?;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .with_context(|| {
            format!("{shown}: no welcome frame within 10 s: not a Switchboard gateway?")
        })?;
    let welcome = match first {
        Some(Ok(Message::Text(t))) => {
            serde_json::from_str::<Value>(t.as_str()).unwrap_or(Value::Null)
        }
        other => bail!("{shown}: not a Switchboard gateway (first frame {other:?})"),
    };
    if welcome["type"] != "welcome" || welcome["server"] != "switchboard" {
        bail!("{shown}: not a Switchboard gateway (first frame {welcome})");
    }
    Ok((ws, welcome))
}

pub fn work(a: ChatWorkerArgs) -> anyhow::Result<ExitCode> {
    coord::run_worker(worker(a))
}

async fn worker(a: ChatWorkerArgs) -> anyhow::Result<()> {
    let secret = std::fs::read_to_string(&a.secret_file)
        .with_context(|| format!("reading {}", a.secret_file.display()))?;
    let signer = TokenSigner::new(secret.trim().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.secret_file.display()))?;
    let stats = Rc::new(RefCell::new(Stats::new()));
    // Connect everyone first, so the measured window is steady traffic only.
    let expiry = now_us() / 1_000_000 + 24 * 3600;
    let bases = Rc::new(split_urls(&a.url));
    let agent_bases = match &a.agent_url {
        Some(u) => Rc::new(split_urls(u)),
        None => bases.clone(),
    };
    let mut agents = Vec::new();
    for i in 0..a.agents {
        let token = signer.mint(TokenKind::Agent, &format!("{}{i}", a.agent_prefix), expiry);
        let ep = Endpoint {
            bases: agent_bases.clone(),
            at: i,
            path: format!("/ws/agent?token={token}&client=api"),
        };
        let ws = connect(&ep.url()).await?.0;
        agents.push((ep, ws));
    }
    let mut visitors = Vec::new();
    for i in 0..a.visitors {
        let url = format!("{}/ws/visitor?client=api", bases[i % bases.len()]);
        visitors.push(connect(&url).await?);
    }
    stats.borrow_mut().connections = (a.agents + a.visitors) as u64;
    coord::ready_then_wait_for_go(a.core).await?;
    let cpu0 = loadtest::host::own_cpu_seconds();
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(a.duration);
    let drain_until = stop_at + Duration::from_secs(a.drain);
    let reporter = {
        let stats = stats.clone();
        coord::spawn_reporter(move || stats.borrow().report())
    };
    let mut tasks = Vec::new();
    for (ep, ws) in agents {
        tasks.push(tokio::task::spawn_local(agent(
            ep,
            ws,
            stats.clone(),
            a.replies,
            stop_at,
            drain_until,
        )));
    }
    // Bodies as JSON string literals, encoded once: frames are formatted around them.
    let bodies: Vec<String> = match &a.texts {
        Some(path) => read_texts(path)?
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?,
        None => vec![serde_json::to_string(&"x".repeat(a.size.max(1)))?],
    };
    let n = visitors.len();
    let churn = (a.reconnect_every > 0.0).then(|| Duration::from_secs_f64(a.reconnect_every));
    for (i, (ws, welcome)) in visitors.into_iter().enumerate() {
        let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
        // Spread visitors over the period (and reconnects over theirs) for a steady load.
        let frac = i as f64 / n.max(1) as f64;
        let v = Visitor {
            ws,
            token: welcome["token"].as_str().unwrap_or_default().to_string(),
            bases: bases.clone(),
            at: i,
            stats: stats.clone(),
            ledger: SenderLedger::default(),
            body: bodies[(a.visitor_offset + i) % bodies.len()].clone(),
            conv: None,
            last_seq: 0,
        };
        tasks.push(tokio::task::spawn_local(v.run(
            period,
            period.mul_f64(frac),
            churn.map(|c| (c, c.mul_f64(frac))),
            stop_at,
            drain_until,
        )));
    }
    coord::join_all(tasks, reporter).await;
    let window_s = started
        .elapsed()
        .as_secs_f64()
        .min(a.duration as f64 + a.drain as f64);
    coord::emit_result(stats.borrow().report(), cpu0, window_s);
    Ok(())
}

struct Visitor {
    ws: Ws,
    token: String,
    /// The gateways it may use, and which it uses now.
    bases: Rc<Vec<String>>,
    at: usize,
    stats: Rc<RefCell<Stats>>,
    ledger: SenderLedger,
    /// The message body, already a JSON string literal.
    body: String,
    conv: Option<String>,
    last_seq: u64,
}

impl Visitor {
    async fn send_msg(&mut self, cid: &str) -> bool {
        // cids are `<n>-<micros>`: nothing to escape.
        let frame = format!(r#"{{"type":"msg","cid":"{cid}","body":{}}}"#, self.body);
        self.ws.send(Message::text(frame)).await.is_ok()
    }

    /// Drops the connection, reconnects with the visitor token, resumes and resends
    /// everything unacked (same cids: the gateway stores each once).
    async fn reconnect(&mut self, give_up: Instant) {
        let _ = self.ws.close(None).await;
        let mut ep = Endpoint {
            bases: self.bases.clone(),
            at: self.at,
            path: format!("/ws/visitor?token={}&client=api", self.token),
        };
        let again = connect_again(&mut ep, &self.stats, give_up).await;
        self.at = ep.at;
        match again {
            Some(ws) => self.ws = ws,
            None => return,
        }
        if let Some(conv) = &self.conv {
            let r = json!({"type":"resume","conv":conv,"last_seq":self.last_seq}).to_string();
            let _ = self.ws.send(Message::text(r)).await;
        }
        for cid in self.ledger.unacked() {
            let _ = self.send_msg(&cid).await;
        }
    }

    async fn run(
        mut self,
        period: Duration,
        offset: Duration,
        churn: Option<(Duration, Duration)>,
        stop_at: Instant,
        drain_until: Instant,
    ) {
        let start = Instant::now();
        let mut next = start + offset;
        let mut next_churn = churn.map(|(every, off)| start + every + off);
        let mut n = 0u64;
        loop {
            let now = Instant::now();
            if now >= stop_at && self.ledger.lost() == 0 || now >= drain_until {
                break;
            }
            let until_send = if now < stop_at {
                next.saturating_duration_since(now)
            } else {
                drain_until - now
            };
            let until_churn = next_churn
                .filter(|_| now < stop_at)
                .map_or(Duration::MAX, |t| t.saturating_duration_since(now));
            tokio::select! {
                _ = tokio::time::sleep(until_churn.min(until_send)), if now < stop_at => {
                    if until_churn <= until_send {
                        self.reconnect(drain_until).await;
                        if let (Some(t), Some((every, _))) = (next_churn.as_mut(), churn) {
                            *t += every;
                        }
                        continue;
                    }
                    n += 1;
                    let t = now_us();
                    let cid = format!("{n}-{t}");
                    self.ledger.sent(&cid, t);
                    self.stats.borrow_mut().sent += 1;
                    // A failed send is resent after the next reconnect (or counted lost).
                    let _ = self.send_msg(&cid).await;
                    next += period;
                }
                m = self.ws.next() => {
                    let Some(Ok(Message::Text(t))) = m else {
                        if matches!(m, None | Some(Err(_))) {
                            // Churn, or the gateway went away (a restart): come back.
                            if Instant::now() < drain_until {
                                self.reconnect(drain_until).await;
                                continue;
                            }
                            break;
                        }
                        continue;
                    };
                    let Ok(f) = serde_json::from_str::<Frame>(t.as_str()) else { continue };
                    self.on_frame(&f);
                }
            }
        }
        self.stats.borrow_mut().lost += self.ledger.lost();
        let _ = self.ws.close(None).await;
    }

    fn on_frame(&mut self, f: &Frame) {
        let mut s = self.stats.borrow_mut();
        match f.kind.as_ref() {
            "ack" => {
                let cid = f.cid.as_deref().unwrap_or_default();
                let seq = f.seq.unwrap_or(0);
                if self.conv.is_none() {
                    self.conv = f.conv.as_deref().map(str::to_owned);
                }
                self.last_seq = self.last_seq.max(seq);
                match self.ledger.ack(cid, seq, now_us()) {
                    Ack::First { latency_us } => {
                        s.acked += 1;
                        s.ack_hist.saturating_record(latency_us);
                    }
                    Ack::Duplicate => s.dup_acks += 1,
                    Ack::Repeat | Ack::Unknown => {}
                }
            }
            "msg" => self.last_seq = self.last_seq.max(f.seq.unwrap_or(0)),
            "error" => s.error(f.error_code()),
            _ => {}
        }
    }
}

/// Where a client connects: one of several gateways (the nodes of a cluster) and its path.
struct Endpoint {
    bases: Rc<Vec<String>>,
    /// Which of `bases` (mod their number).
    at: usize,
    path: String,
}

impl Endpoint {
    fn url(&self) -> String {
        format!("{}{}", self.bases[self.at % self.bases.len()], self.path)
    }
}

/// `ws://a,ws://b/` as `["ws://a", "ws://b"]`.
fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// A new connection for a client whose connection ended (or, under churn, was dropped),
/// tried every 100 ms until `give_up`, each try at the next gateway of several (so a
/// client of a node that died goes to another); counted as a reconnect once it is up.
async fn connect_again(ep: &mut Endpoint, stats: &RefCell<Stats>, give_up: Instant) -> Option<Ws> {
    loop {
        match connect(&ep.url()).await {
            Ok((ws, _)) => {
                stats.borrow_mut().reconnects += 1;
                return Some(ws);
            }
            Err(_) if Instant::now() < give_up => {
                stats.borrow_mut().error("reconnect_failed");
                ep.at += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return None,
        }
    }
}

/// An agent device: resumes every conversation it is given, records what it is delivered,
/// replies to a share of it. If the gateway goes away it reconnects (until the drain ends)
/// and resumes each conversation after the last message it had.
async fn agent(
    mut ep: Endpoint,
    mut ws: Ws,
    stats: Rc<RefCell<Stats>>,
    replies: f64,
    stop_at: Instant,
    drain_until: Instant,
) {
    let mut ledger = ReceiverLedger::default();
    let mut reconnected = false;
    let mut n = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while Instant::now() < drain_until {
        // After the load stops, an agent that has heard nothing for 2 s is done.
        let now = Instant::now();
        let wait = if now < stop_at {
            drain_until - now
        } else {
            (drain_until - now).min(Duration::from_secs(2))
        };
        let m = tokio::time::timeout(wait, ws.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = m else {
            match m {
                Ok(Some(Ok(_))) => continue,
                // Heard nothing for the whole wait: done.
                Err(_) => break,
                // The connection ended.
                Ok(None | Some(Err(_))) => {
                    match connect_again(&mut ep, &stats, drain_until).await {
                        Some(fresh) => {
                            ws = fresh;
                            reconnected = true;
                            continue;
                        }
                        None => break,
                    }
                }
            }
        };
        let Ok(f) = serde_json::from_str::<Frame>(t.as_str()) else {
            continue;
        };
        match f.kind.as_ref() {
            "assigned" => {
                let last = ledger.last(f.conv.as_deref().unwrap_or_default());
                let r = json!({"type":"resume","conv":f.conv,"last_seq":last}).to_string();
                let _ = ws.send(Message::text(r)).await;
            }
            "msg" if f.from.as_deref().is_some_and(|f| f.starts_with('v')) => {
                let conv = f.conv.as_deref().unwrap_or_default();
                if !ledger.delivered(conv, f.seq.unwrap_or(0)) {
                    stats.borrow_mut().dup_relays += 1;
                    continue;
                }
                let sent = f
                    .cid
                    .as_deref()
                    .and_then(|c| c.split('-').nth(1))
                    .and_then(|t| t.parse::<u64>().ok());
                {
                    let mut s = stats.borrow_mut();
                    s.relayed += 1;
                    if let Some(t0) = sent {
                        s.relay_hist.saturating_record(now_us().saturating_sub(t0));
                    }
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 10_000) as f64 / 10_000.0 < replies {
                    n += 1;
                    let r = json!({"type":"msg","cid":format!("r{n}"),"body":"thanks, looking into it","conv":f.conv}).to_string();
                    let _ = ws.send(Message::text(r)).await;
                }
            }
            "error" => stats.borrow_mut().error(f.error_code()),
            _ => {}
        }
    }
    // Gaps mean a delivered sequence skipped messages; with replies interleaved the
    // agent's own messages are not delivered back to it, so gaps are only counted without.
    // Across a gateway restart seqs skip on purpose (docs/protocol.md, "Seqs"): then only
    // `undelivered` (acked, never relayed) tells a lost message.
    if replies == 0.0 && !reconnected {
        stats.borrow_mut().gaps += ledger.gaps();
    }
}

pub fn coordinate_churn(a: ChurnArgs) -> anyhow::Result<ExitCode> {
    if !(a.reconnect_every > 0.0 && a.reconnect_every <= 3600.0) {
        bail!("--reconnect-every must be in (0, 3600] seconds");
    }
    coordinate_with(a.chat, a.reconnect_every, "churn")
}

pub fn coordinate(a: ChatArgs) -> anyhow::Result<ExitCode> {
    coordinate_with(a, 0.0, "chat")
}

fn coordinate_with(a: ChatArgs, reconnect_every: f64, scenario: &str) -> anyhow::Result<ExitCode> {
    let (pids, cores, clauses) = a.common.validate()?;
    for url in split_urls(&a.url).iter().chain(
        a.agent_url
            .as_deref()
            .map(split_urls)
            .unwrap_or_default()
            .iter(),
    ) {
        coord::loopback_target(url)?;
    }
    let c = &a.common;
    if a.agents < c.procs || a.visitors < c.procs {
        bail!(
            "--agents and --visitors must each be at least --procs ({})",
            c.procs
        );
    }
    if !(a.rate > 0.0 && a.rate <= 10_000.0) {
        bail!("--rate must be in (0, 10000] messages per second per visitor");
    }
    if !(0.0..=1.0).contains(&a.replies) {
        bail!("--replies is a share: 0..=1");
    }
    if a.size == 0 || a.size > 1 << 20 {
        bail!("--size must be 1..=1048576 bytes");
    }
    if let Some(path) = &a.texts {
        read_texts(path)?;
    }
    std::fs::read_to_string(&a.secret_file)
        .with_context(|| format!("--secret-file {}", a.secret_file.display()))?;
    let worker_args: Vec<Vec<String>> = (0..c.procs)
        .map(|w| {
            let share = |n: usize| n / c.procs + usize::from(w < n % c.procs);
            let mut v: Vec<String> = vec![
                "__chat_worker".into(),
                "--url".into(),
                split_urls(&a.url).join(","),
            ];
            if let Some(u) = &a.agent_url {
                v.push("--agent-url".into());
                v.push(split_urls(u).join(","));
            }
            v.push("--secret-file".into());
            v.push(a.secret_file.display().to_string());
            if let Some(t) = &a.texts {
                v.push("--texts".into());
                v.push(t.display().to_string());
                // So that the workers' visitors write different lines.
                v.push("--visitor-offset".into());
                v.push((w * a.visitors / c.procs.max(1)).to_string());
            }
            for (k, val) in [
                ("--agents", share(a.agents).to_string()),
                ("--agent-prefix", format!("lt{}-{w}-", std::process::id())),
                ("--visitors", share(a.visitors).to_string()),
                ("--rate", a.rate.to_string()),
                ("--size", a.size.to_string()),
                ("--replies", a.replies.to_string()),
                ("--duration", c.duration.to_string()),
                ("--drain", c.drain.to_string()),
                ("--reconnect-every", reconnect_every.to_string()),
            ] {
                v.push(k.into());
                v.push(val);
            }
            v
        })
        .collect();
    let last = RefCell::new((0u64, 0.0f64));
    let run = coord::run_workers(
        worker_args,
        &cores,
        c.duration,
        c.drain,
        &pids,
        |latest, t| {
            let sent = coord::sum(latest, "sent");
            let (prev, prev_t) = *last.borrow();
            *last.borrow_mut() = (sent, t);
            let rate = (sent - prev.min(sent)) as f64 / (t - prev_t).max(0.001);
            let ack = coord::merged(latest, "ack")
                .map(|h| hist::summary(&h).p99)
                .unwrap_or(0);
            let relay = coord::merged(latest, "relay")
                .map(|h| hist::summary(&h).p99)
                .unwrap_or(0);
            let errors: u64 = latest
                .iter()
                .flat_map(|r| r["errors"].as_object().into_iter().flatten())
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum();
            format!(
            "conns {} | sent {} ({:.0}/s) | acked {} | relayed {} | reconnects {} | ack p99 {:.1} ms | relay p99 {:.1} ms | errors {}",
            coord::sum(latest, "connections"), sent, rate, coord::sum(latest, "acked"), coord::sum(latest, "relayed"),
            coord::sum(latest, "reconnects"), ack as f64 / 1000.0, relay as f64 / 1000.0, errors
        )
        },
    )?;
    let r = &run.results;
    let (sent, acked, relayed) = (
        coord::sum(r, "sent"),
        coord::sum(r, "acked"),
        coord::sum(r, "relayed"),
    );
    let duplicated = coord::sum(r, "dup_acks") + coord::sum(r, "dup_relays");
    let gaps = coord::sum(r, "gaps");
    let lost = coord::sum(r, "lost") + gaps;
    let undelivered = acked.saturating_sub(relayed);
    let reconnects = coord::sum(r, "reconnects");
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for x in r {
        for (k, v) in x["errors"].as_object().into_iter().flatten() {
            *errors.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
    let ack = hist::summary(&coord::merged(r, "ack")?);
    let relay = hist::summary(&coord::merged(r, "relay")?);
    let rate = acked as f64 / c.duration as f64;
    println!(
        "{scenario}: {} agents, {} visitors at {}/s each ({} msg/s offered), {} B bodies, {} s, {} worker(s){}",
        a.agents,
        a.visitors,
        a.rate,
        a.visitors as f64 * a.rate,
        a.size,
        c.duration,
        c.procs,
        if reconnect_every > 0.0 { format!(", reconnect every {reconnect_every} s") } else { String::new() }
    );
    println!("sent {sent}, acked (stored) {acked} = {rate:.0}/s, relayed to agents {relayed}, lost {lost}, duplicated {duplicated}, undelivered {undelivered}, reconnects {reconnects}");
    coord::print_latency("ack latency", &ack);
    coord::print_latency("relay latency", &relay);
    if !errors.is_empty() {
        println!("errors: {errors:?}");
    }
    let cpu_us = run.server_cpu_s * 1e6 / sent.max(1) as f64;
    if !pids.is_empty() {
        println!(
            "server CPU in the steady window: {:.2} s over {:.1} s = {cpu_us:.1} us per message sent",
            run.server_cpu_s, run.window_s
        );
    }
    let mut figures = coord::figures(&[
        ("sent", sent as f64),
        ("acked", acked as f64),
        ("rate", rate),
        ("lost", lost as f64),
        ("duplicated", duplicated as f64),
        ("undelivered", undelivered as f64),
        ("errors", errors.values().sum::<u64>() as f64),
        ("reconnects", reconnects as f64),
    ]);
    coord::latency_figures(&mut figures, "ack", &ack);
    coord::latency_figures(&mut figures, "relay", &relay);
    if !pids.is_empty() {
        figures.insert("server_cpu_us_per_message".into(), cpu_us);
    }
    let out = json!({
        "scenario": scenario,
        "settings": {"agents": a.agents, "visitors": a.visitors, "rate_per_visitor": a.rate, "size": a.size, "replies": a.replies, "duration_s": c.duration, "drain_s": c.drain, "procs": c.procs, "reconnect_every_s": reconnect_every, "cores": c.cores},
        "sent": sent, "acked": acked, "relayed": relayed, "lost": lost, "duplicated": duplicated, "undelivered": undelivered, "reconnects": reconnects,
        "stored_per_second": rate, "ack_us": ack, "relay_us": relay, "errors": errors,
        "server_cpu_seconds": run.server_cpu_s, "server_cpu_us_per_message": cpu_us, "window_seconds": run.window_s,
        "worker_cpu_seconds": r.iter().map(|x| x["cpu_s"].clone()).collect::<Vec<_>>(),
    });
    coord::finish(
        out,
        &figures,
        &clauses,
        c.json.as_deref(),
        lost > 0 || duplicated > 0,
    )
}
