//! One shard's connection to the storage bridge, over its Unix socket.
//!
//! The core produces requests (persist batches, conversation loads, reads); this task sends
//! them and hands answers back. Every request stays in `inflight` until answered, so when the
//! bridge goes away the task reconnects with backoff and sends them all again, in order:
//! persisting is idempotent on the bridge side. Meanwhile the shard goes on relaying; only
//! acks wait, and past the core's bound new messages get `overloaded`.

use crate::runtime::ShardCtx;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::UnixStream;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};
use switchboard_protocol::bridge::{decode, encode, BridgeMsg, BRIDGE_PROTOCOL_VERSION};

/// The request id of a gateway -> bridge message.
fn req_of(m: &BridgeMsg) -> Option<u64> {
    match m {
        BridgeMsg::Persist { req, .. }
        | BridgeMsg::LoadConv { req, .. }
        | BridgeMsg::History { req, .. }
        | BridgeMsg::OpenConvs { req, .. }
        | BridgeMsg::OpenConvsAre { req, .. } => Some(*req),
        BridgeMsg::Persisted { req }
        | BridgeMsg::Failed { req, .. }
        | BridgeMsg::ConvLoaded { req, .. }
        | BridgeMsg::HistoryIs { req, .. } => Some(*req),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("the bridge refused: {0}")]
    Refused(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the bridge: {0}")]
    Codec(#[from] switchboard_protocol::bridge::CodecError),
    #[error("unexpected handshake answer")]
    Handshake,
}

async fn handshake(path: &Path, shard: u32) -> Result<(UnixStream, Vec<u8>), LinkError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let mut out = Vec::new();
    encode(
        &BridgeMsg::Hello {
            version: BRIDGE_PROTOCOL_VERSION,
            shard,
        },
        &mut out,
    );
    stream.write_all(&out).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match decode(&mut buf)? {
            Some(BridgeMsg::Welcome { version }) if version == BRIDGE_PROTOCOL_VERSION => {
                return Ok((stream, buf))
            }
            Some(BridgeMsg::Refuse { reason }) => return Err(LinkError::Refused(reason)),
            Some(_) => return Err(LinkError::Handshake),
            None => {}
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(LinkError::Handshake);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Requests sent and not yet answered, with when the shard first sent them.
type Inflight = BTreeMap<u64, (BridgeMsg, Instant)>;

/// Moves new requests from the core into `inflight`; returns them encoded.
fn take_new(ctx: &ShardCtx, inflight: &mut Inflight) -> Vec<u8> {
    let reqs = ctx.shard.borrow_mut().take_bridge_requests();
    let mut out = Vec::new();
    let now = Instant::now();
    for r in reqs {
        encode(&r, &mut out);
        if let Some(id) = req_of(&r) {
            inflight.insert(id, (r, now));
        }
    }
    out
}

enum Event {
    Read(std::io::Result<usize>),
    Wake,
}

/// Runs for the shard's lifetime.
pub async fn run(ctx: Rc<ShardCtx>, path: std::path::PathBuf) {
    let mut inflight = Inflight::new();
    // How long acks wait on storage: persist batch sent -> confirmed (resends included).
    let confirm =
        metrics::histogram!(crate::metrics::STORAGE_CONFIRM_SECONDS, "shard" => ctx.id.to_string());
    let mut backoff = Duration::from_millis(50);
    let mut last_warning: Option<Instant> = None;
    let up = metrics::gauge!("chat_bridge_up", "shard" => ctx.id.to_string());
    loop {
        let (mut stream, mut buf) = match handshake(&path, ctx.id).await {
            Ok(s) => s,
            Err(e) => {
                up.set(0.0);
                // Keep taking requests so nothing piles up unaccounted in the core.
                take_new(&ctx, &mut inflight);
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(shard = ctx.id, error = %e, waiting = inflight.len(), "storage bridge unavailable; retrying");
                }
                future::or(glommio::timer::sleep(backoff), ctx.bridge_wake.wait()).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        up.set(1.0);
        backoff = Duration::from_millis(50);
        last_warning = None;
        tracing::info!(
            shard = ctx.id,
            resending = inflight.len(),
            "connected to the storage bridge"
        );
        // Everything unanswered goes again, oldest first.
        let mut out = Vec::new();
        for (m, _) in inflight.values() {
            encode(m, &mut out);
        }
        out.extend(take_new(&ctx, &mut inflight));
        let mut chunk = vec![0u8; 64 * 1024];
        let result: Result<(), LinkError> = async {
            loop {
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    out.clear();
                }
                let ev = future::or(
                    async { Event::Read(stream.read(&mut chunk).await) },
                    async {
                        ctx.bridge_wake.wait().await;
                        Event::Wake
                    },
                )
                .await;
                match ev {
                    Event::Wake => {}
                    Event::Read(Ok(0)) => {
                        return Err(LinkError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                    }
                    Event::Read(Err(e)) => return Err(e.into()),
                    Event::Read(Ok(n)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        let now = ctx.now();
                        while let Some(msg) = decode(&mut buf)? {
                            if let BridgeMsg::Refuse { reason } = msg {
                                return Err(LinkError::Refused(reason));
                            }
                            if let Some((BridgeMsg::Persist { .. }, sent)) =
                                req_of(&msg).and_then(|id| inflight.remove(&id))
                            {
                                confirm.record(sent.elapsed().as_secs_f64());
                            }
                            ctx.with_shard(|s| s.on_bridge(msg, now));
                        }
                        glommio::yield_if_needed().await;
                    }
                }
                out.extend(take_new(&ctx, &mut inflight));
            }
        }
        .await;
        up.set(0.0);
        if let Err(e) = result {
            tracing::warn!(shard = ctx.id, error = %e, "lost the storage bridge; reconnecting");
        }
    }
}
