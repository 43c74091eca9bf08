//! The `history` scenario: read-path load. A seeded conversation of M messages is read
//! page by page, at random positions, over WebSocket (`history` frames, as the visitor) and
//! over the storage bridge's HTTP API (with an agent token). Every answer is checked: the
//! right number of messages, in order, ending just before `before`; anything else counts as
//! `bad`.

use crate::chat::connect;
use crate::coord::{self, Common};
use anyhow::{bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use loadtest::hist;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

pub const FIGURES: &str = "ws_p50..ws_max, http_p50..http_max (us unless a unit is given), ws_requests, http_requests, bad, errors, rate (answers/s)";

#[derive(Args, Clone, Debug)]
pub struct HistoryArgs {
    /// Gateway base URL, e.g. ws://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// The storage bridge's HTTP address (e.g. 127.0.0.1:8081); unset: WebSocket only.
    #[arg(long)]
    http: Option<String>,
    /// File with the gateway's token secret (to mint an agent token for HTTP).
    #[arg(long)]
    secret_file: std::path::PathBuf,
    /// Messages seeded into the conversation before the run.
    #[arg(long, default_value_t = 300)]
    messages: u64,
    /// Messages per page.
    #[arg(long, default_value_t = 50)]
    limit: u64,
    /// WebSocket readers.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// HTTP readers (each one keep-alive connection).
    #[arg(long, default_value_t = 4)]
    http_clients: usize,
    /// Requests per second per reader.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone, Debug)]
pub struct HistoryWorkerArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    http: Option<String>,
    #[arg(long)]
    visitor_token: String,
    #[arg(long)]
    agent_token: String,
    #[arg(long)]
    conv: String,
    #[arg(long)]
    messages: u64,
    #[arg(long)]
    limit: u64,
    #[arg(long)]
    clients: usize,
    #[arg(long)]
    http_clients: usize,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    duration: u64,
    #[arg(long)]
    core: Option<usize>,
}

/// Whether a page answering `before`/`limit` over `messages` seeded ones (seq 1..=M) is right.
pub fn page_is_right(seqs: &[u64], before: u64, limit: u64, messages: u64) -> bool {
    let last = before.saturating_sub(1).min(messages);
    let want = limit.min(last);
    seqs.len() as u64 == want
        && seqs.windows(2).all(|w| w[1] == w[0] + 1)
        && seqs.last().is_none_or(|&s| s == last)
}

fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["seq"].as_u64()).collect())
        .unwrap_or_default()
}

#[derive(Default)]
struct Counts {
    ws: u64,
    http: u64,
    bad: u64,
    errors: u64,
}

pub fn work(a: HistoryWorkerArgs) -> anyhow::Result<ExitCode> {
    coord::run_worker(worker(a))
}

struct Http {
    stream: BufReader<tokio::net::TcpStream>,
    host: String,
}

impl Http {
    async fn connect(addr: &str) -> anyhow::Result<Http> {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("--http {addr}: cannot connect"))?;
        s.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(s),
            host: addr.to_string(),
        })
    }

    /// One GET on the keep-alive connection; returns status and body.
    async fn get(&mut self, path: &str, token: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            self.host
        );
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad HTTP status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// One reader of history pages, over either interface.
enum Reader {
    Ws(Box<crate::chat::Ws>),
    /// The bridge's HTTP API, with the agent token it needs.
    Http(Http, String),
}

/// What one page request got.
enum Page {
    /// A page: the seqs it held, in order.
    Seqs(Vec<u64>),
    /// An error answer (error frame, non-200 status); the connection carries on.
    Refused,
    /// No answer within 10 s, or the connection broke: this reader stops.
    Broken,
}

impl Reader {
    fn is_ws(&self) -> bool {
        matches!(self, Reader::Ws(_))
    }

    async fn page(&mut self, conv: &str, before: u64, limit: u64) -> Page {
        let wait = Duration::from_secs(10);
        match self {
            Reader::Ws(ws) => {
                let req = json!({"type":"history","conv":conv,"before":before,"limit":limit});
                if ws.send(Message::text(req.to_string())).await.is_err() {
                    return Page::Broken;
                }
                loop {
                    match tokio::time::timeout(wait, ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                            match v["type"].as_str() {
                                Some("history") => return Page::Seqs(seqs(&v["messages"])),
                                Some("error") => return Page::Refused,
                                _ => {}
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => return Page::Broken,
                    }
                }
            }
            Reader::Http(http, token) => {
                let path =
                    format!("/api/v1/conversations/{conv}/messages?before={before}&limit={limit}");
                match tokio::time::timeout(wait, http.get(&path, token)).await {
                    Ok(Ok((200, body))) => {
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        Page::Seqs(seqs(&v["messages"]))
                    }
                    Ok(Ok(_)) => Page::Refused,
                    _ => Page::Broken,
                }
            }
        }
    }
}

async fn worker(a: HistoryWorkerArgs) -> anyhow::Result<()> {
    let counts = Rc::new(RefCell::new(Counts::default()));
    let ws_hist = Rc::new(RefCell::new(hist::new_hist()));
    let http_hist = Rc::new(RefCell::new(hist::new_hist()));
    let mut wss = Vec::new();
    for _ in 0..a.clients {
        wss.push(
            connect(&format!(
                "{}/ws/visitor?token={}&client=api",
                a.url, a.visitor_token
            ))
            .await?
            .0,
        );
    }
    let mut https = Vec::new();
    for _ in 0..a.http_clients {
        let addr = a.http.as_deref().context("HTTP readers need --http")?;
        https.push(Http::connect(addr).await?);
    }
    coord::ready_then_wait_for_go(a.core).await?;
    let cpu0 = loadtest::host::own_cpu_seconds();
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(a.duration);
    let report = {
        let (c, w, h) = (counts.clone(), ws_hist.clone(), http_hist.clone());
        move || {
            let c = c.borrow();
            json!({"ws_requests": c.ws, "http_requests": c.http, "bad": c.bad, "errors": c.errors,
                   "ws": hist::encode(&w.borrow()), "http": hist::encode(&h.borrow())})
        }
    };
    let reporter = coord::spawn_reporter(report.clone());
    let period = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let mut tasks = Vec::new();
    let mut seed = (std::process::id() as u64) << 32 | 0x9e37;
    let mut next_before = move |messages: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        2 + seed % messages
    };
    let readers = wss.into_iter().map(|w| Reader::Ws(Box::new(w))).chain(
        https
            .into_iter()
            .map(|h| Reader::Http(h, a.agent_token.clone())),
    );
    for mut reader in readers {
        let counts = counts.clone();
        let h = if reader.is_ws() {
            ws_hist.clone()
        } else {
            http_hist.clone()
        };
        let (conv, limit, messages) = (a.conv.clone(), a.limit, a.messages);
        let befores: Vec<u64> = (0..(a.duration as f64 * a.rate) as usize + 1)
            .map(|_| next_before(messages))
            .collect();
        tasks.push(tokio::task::spawn_local(async move {
            let mut next = Instant::now();
            for before in befores {
                if Instant::now() >= stop_at {
                    break;
                }
                tokio::time::sleep_until(next.into()).await;
                next += period;
                let t0 = Instant::now();
                let page = reader.page(&conv, before, limit).await;
                let mut c = counts.borrow_mut();
                *(if reader.is_ws() {
                    &mut c.ws
                } else {
                    &mut c.http
                }) += 1;
                match page {
                    Page::Seqs(seqs) => {
                        h.borrow_mut()
                            .saturating_record(t0.elapsed().as_micros() as u64);
                        if !page_is_right(&seqs, before, limit, messages) {
                            c.bad += 1;
                        }
                    }
                    Page::Refused => c.errors += 1,
                    Page::Broken => {
                        c.errors += 1;
                        break;
                    }
                }
            }
        }));
    }
    coord::join_all(tasks, reporter).await;
    coord::emit_result(report(), cpu0, a.duration as f64);
    Ok(())
}

/// Sends `cids` on one connection at most 15 per second (under the gateway's default
/// per-connection rate limit) and waits for every ack; returns the conversation.
async fn seed_on(url: String, conv: String, cids: Vec<u64>) -> anyhow::Result<()> {
    let (mut ws, _) = connect(&url).await?;
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut next = Instant::now();
    let mut to_send = cids.iter();
    let mut sent = 0;
    while acked < cids.len() {
        if sent < cids.len() && Instant::now() >= next {
            let n = to_send.next().expect("counted");
            sent += 1;
            next += Duration::from_millis(67);
            let frame = json!({"type":"msg","cid":format!("seed-{n}"),"body":format!("history seed message {n}"),"conv":conv});
            ws.send(Message::text(frame.to_string())).await?;
            continue;
        }
        let wait = if sent < cids.len() {
            next.saturating_duration_since(Instant::now())
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) if Instant::now() < deadline => {}
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("ack") => acked += 1,
                    Some("error") => bail!("seeding failed: {v}"),
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => bail!(
                "seeding: the gateway stopped answering ({acked} of {} acked)",
                cids.len()
            ),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Creates the conversation and its messages over several connections of one visitor
/// (the rate limit is per connection); returns (visitor token, conv).
async fn seed(url: &str, messages: u64) -> anyhow::Result<(String, String)> {
    let (mut ws, welcome) = connect(&format!("{url}/ws/visitor?client=api")).await?;
    let token = welcome["token"]
        .as_str()
        .context("welcome without a visitor token")?
        .to_string();
    // The first message opens the conversation; the others name it.
    ws.send(Message::text(
        json!({"type":"msg","cid":"seed-1","body":"history seed message 1"}).to_string(),
    ))
    .await?;
    let conv = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("ack") => {
                        break v["conv"].as_str().context("ack without conv")?.to_string()
                    }
                    Some("error") => bail!("seeding failed: {v}"),
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => bail!("seeding: no ack for the first message"),
        }
    };
    let devices = (messages / 60 + 1).min(32);
    let dev_url = format!("{url}/ws/visitor?token={token}&client=api");
    let mut tasks = Vec::new();
    for d in 0..devices {
        let cids: Vec<u64> = (2..=messages).filter(|n| n % devices == d).collect();
        tasks.push(tokio::spawn(seed_on(dev_url.clone(), conv.clone(), cids)));
    }
    for t in tasks {
        t.await??;
    }
    drop(ws);
    Ok((token, conv))
}

pub fn coordinate(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let (pids, cores, clauses) = a.common.validate()?;
    coord::loopback_target(&a.url)?;
    let c = &a.common;
    if a.messages < 2 || a.messages > 100_000 {
        bail!("--messages must be 2..=100000");
    }
    if a.limit == 0 || a.limit > 200 {
        bail!("--limit must be 1..=200 (the gateway caps pages at 200)");
    }
    if a.http_clients > 0 && a.http.is_none() {
        bail!("--http-clients needs --http (the bridge's HTTP address), or use --http-clients 0");
    }
    if a.clients + a.http_clients < c.procs {
        bail!("--clients + --http-clients must be at least --procs");
    }
    let secret = std::fs::read_to_string(&a.secret_file)
        .with_context(|| format!("--secret-file {}", a.secret_file.display()))?;
    let signer = TokenSigner::new(secret.trim().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.secret_file.display()))?;
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 24 * 3600;
    let agent_token = signer.mint(TokenKind::Agent, "loadtest-history", exp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = a.url.trim_end_matches('/').to_string();
    let (visitor_token, conv) = rt.block_on(seed(&url, a.messages))?;
    drop(rt);
    let args = (0..c.procs)
        .map(|w| {
            let share = |n: usize| n / c.procs + usize::from(w < n % c.procs);
            let mut v: Vec<String> = vec!["__history_worker".into()];
            for (k, val) in [
                ("--url", url.clone()),
                ("--visitor-token", visitor_token.clone()),
                ("--agent-token", agent_token.clone()),
                ("--conv", conv.clone()),
                ("--messages", a.messages.to_string()),
                ("--limit", a.limit.to_string()),
                ("--clients", share(a.clients).to_string()),
                ("--http-clients", share(a.http_clients).to_string()),
                ("--rate", a.rate.to_string()),
                ("--duration", c.duration.to_string()),
            ] {
                v.push(k.into());
                v.push(val);
            }
            if let Some(h) = &a.http {
                v.push("--http".into());
                v.push(h.clone());
            }
            v
        })
        .collect();
    let run = coord::run_workers(args, &cores, c.duration, c.drain, &pids, |latest, _| {
        let p99 = |k| {
            coord::merged(latest, k)
                .map(|h| hist::summary(&h).p99)
                .unwrap_or(0) as f64
                / 1000.0
        };
        format!(
            "ws {} (p99 {:.2} ms) | http {} (p99 {:.2} ms) | bad {} | errors {}",
            coord::sum(latest, "ws_requests"),
            p99("ws"),
            coord::sum(latest, "http_requests"),
            p99("http"),
            coord::sum(latest, "bad"),
            coord::sum(latest, "errors")
        )
    })?;
    let r = &run.results;
    let (wsn, httpn, bad, errors) = (
        coord::sum(r, "ws_requests"),
        coord::sum(r, "http_requests"),
        coord::sum(r, "bad"),
        coord::sum(r, "errors"),
    );
    let ws = hist::summary(&coord::merged(r, "ws")?);
    let http = hist::summary(&coord::merged(r, "http")?);
    let rate = (ws.count + http.count) as f64 / c.duration as f64;
    println!(
        "history: conversation of {} messages, pages of {}, {} ws + {} http readers at {}/s each, {} s: {wsn} ws and {httpn} http requests ({rate:.0} answers/s), bad {bad}, errors {errors}",
        a.messages, a.limit, a.clients, a.http_clients, a.rate, c.duration
    );
    coord::print_latency("ws history", &ws);
    coord::print_latency("http history", &http);
    let mut figures = coord::figures(&[
        ("ws_requests", wsn as f64),
        ("http_requests", httpn as f64),
        ("bad", bad as f64),
        ("errors", errors as f64),
        ("rate", rate),
    ]);
    coord::latency_figures(&mut figures, "ws", &ws);
    coord::latency_figures(&mut figures, "http", &http);
    let out = json!({
        "scenario": "history",
        "settings": {"messages": a.messages, "limit": a.limit, "clients": a.clients, "http_clients": a.http_clients, "rate_per_reader": a.rate, "duration_s": c.duration, "procs": c.procs},
        "ws_requests": wsn, "http_requests": httpn, "bad": bad, "errors": errors, "ws_us": ws, "http_us": http, "answers_per_second": rate,
        "server_cpu_seconds": run.server_cpu_s,
    });
    coord::finish(out, &figures, &clauses, c.json.as_deref(), bad > 0)
}

#[cfg(test)]
mod tests {
    use super::page_is_right;

    #[test]
    fn pages_are_judged_by_count_order_and_end() {
        assert!(page_is_right(&[48, 49], 50, 2, 300));
        assert!(page_is_right(&[1, 2, 3], 4, 50, 300), "short first page");
        assert!(
            page_is_right(&[299, 300], 400, 2, 300),
            "before past the end"
        );
        assert!(!page_is_right(&[47, 49], 50, 2, 300), "a gap");
        assert!(!page_is_right(&[48], 50, 2, 300), "too few");
        assert!(!page_is_right(&[47, 48], 50, 2, 300), "wrong end");
    }
}
