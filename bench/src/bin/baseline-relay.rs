//! The baseline for `bench/compare.sh`: a chat relay built the way a Rust developer would
//! without Switchboard. tokio's multi-thread runtime, tokio-tungstenite with sensible buffer
//! limits, shared state behind a `Mutex`, one task per connection with an unbounded channel
//! for its outgoing frames. It speaks the subset of the Switchboard protocol that
//! `loadtest chat` uses: `welcome`, visitor `msg` -> `ack` + delivery to the assigned agent
//! (`assigned` first), agent `msg` with `conv` -> `ack` + delivery to the visitor. Nothing is
//! stored: compare it with the gateway run with `--bridge off`.

// The handshake callback's error type is tokio-tungstenite's (an HTTP response).
#![allow(clippy::result_large_err)]

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    name = "baseline-relay",
    about = "Baseline chat relay (tokio + tokio-tungstenite) for bench/compare.sh"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
}

type Tx = UnboundedSender<Message>;

#[derive(Default)]
struct Conv {
    seq: u64,
    visitor: Option<Tx>,
    agent: Option<Tx>,
}

#[derive(Default)]
struct State {
    agents: Vec<(String, Tx, usize)>,
    convs: HashMap<String, Conv>,
    next_id: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&args.listen).await?;
        println!("baseline-relay listening on {}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        loop {
            let (stream, _) = listener.accept().await?;
            let state = state.clone();
            tokio::spawn(async move {
                let _ = serve(stream, state).await;
            });
        }
    })
}

fn config() -> WebSocketConfig {
    // The defaults keep a 128 KiB read buffer per connection; chat frames are small.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10))
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, resp: Response| {
            path = req.uri().to_string();
            Ok(resp)
        },
        Some(config()),
    )
    .await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let is_agent = path.starts_with("/ws/agent");
    let id = {
        let mut s = state.lock().unwrap();
        s.next_id += 1;
        let id = format!("{}{:016x}", if is_agent { "a" } else { "v" }, s.next_id);
        if is_agent {
            s.agents.push((id.clone(), tx.clone(), 0));
        }
        id
    };
    let role = if is_agent { "agent" } else { "visitor" };
    let welcome = json!({"type":"welcome","id":id,"role":role,"token":id,"client":"api","server":"switchboard","protocol":1,"shard":0,"idle_timeout_s":300});
    let _ = tx.send(Message::text(welcome.to_string()));
    let mut my_conv: Option<String> = None;
    while let Some(Ok(m)) = stream.next().await {
        let Message::Text(t) = m else { continue };
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            let _ = tx.send(Message::text(r#"{"type":"error","code":"bad_json"}"#));
            continue;
        };
        if v["type"] != "msg" {
            continue;
        }
        let cid = v["cid"].as_str().unwrap_or_default();
        let body = v["body"].as_str().unwrap_or_default();
        let mut s = state.lock().unwrap();
        let conv_id = if is_agent {
            v["conv"].as_str().unwrap_or_default().to_string()
        } else if let Some(c) = &my_conv {
            c.clone()
        } else {
            // A new conversation: to the least-loaded agent.
            s.next_id += 1;
            let c = format!("c{:016x}", s.next_id);
            let agent = s
                .agents
                .iter_mut()
                .filter(|a| !a.1.is_closed())
                .min_by_key(|a| a.2)
                .map(|a| {
                    a.2 += 1;
                    a.1.clone()
                });
            if let Some(a) = &agent {
                let _ = a.send(Message::text(
                    json!({"type":"assigned","conv":c,"visitor":id}).to_string(),
                ));
            }
            s.convs.insert(
                c.clone(),
                Conv {
                    seq: 0,
                    visitor: Some(tx.clone()),
                    agent,
                },
            );
            my_conv = Some(c.clone());
            c
        };
        let Some(conv) = s.convs.get_mut(&conv_id) else {
            let _ = tx.send(Message::text(
                r#"{"type":"error","code":"unknown_conversation"}"#,
            ));
            continue;
        };
        conv.seq += 1;
        let seq = conv.seq;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let out =
            json!({"type":"msg","conv":conv_id,"seq":seq,"from":id,"cid":cid,"body":body,"ts":ts})
                .to_string();
        let peer = if is_agent { &conv.visitor } else { &conv.agent };
        if let Some(p) = peer {
            let _ = p.send(Message::text(out));
        }
        drop(s);
        let _ = tx.send(Message::text(
            json!({"type":"ack","cid":cid,"conv":conv_id,"seq":seq}).to_string(),
        ));
    }
    if is_agent {
        state.lock().unwrap().agents.retain(|a| a.0 != id);
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}
