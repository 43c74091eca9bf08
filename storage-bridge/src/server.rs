//! The Unix-socket side: accepts gateway shard connections, checks the protocol version,
//! and serves `persist` (through the group committer), `load_conv` and `history`.
//!
//! Threading model: one tokio task reads each connection and one writes it; queries run as
//! their own tasks; writes all go through the single committer task.

use crate::commit::CommitJob;
use crate::reads::Reads;
use std::path::Path;
use std::sync::Arc;
use switchboard_protocol::bridge::{decode, encode, BridgeMsg, BRIDGE_PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Binds the socket: refuses to start if another bridge answers on it, removes a stale file
/// left by a crash, and makes the socket owner-only.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running bridge", path.display());
        }
        tracing::warn!(path = %path.display(), "removing a stale socket file");
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    commits: mpsc::Sender<CommitJob>,
    reads: Arc<Reads>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, commits.clone(), reads.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn read_frame(
    rd: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<BridgeMsg>> {
    loop {
        if let Some(msg) = decode(buf)? {
            return Ok(Some(msg));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connection(stream: UnixStream, commits: mpsc::Sender<CommitJob>, reads: Arc<Reads>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let shard = match read_frame(&mut rd, &mut buf).await {
        Ok(Some(BridgeMsg::Hello { version, shard })) if version == BRIDGE_PROTOCOL_VERSION => {
            shard
        }
        Ok(Some(BridgeMsg::Hello { version, .. })) => {
            let reason = format!("protocol version {version} is not supported; this bridge speaks {BRIDGE_PROTOCOL_VERSION}");
            tracing::warn!(%reason, "refusing a gateway connection");
            refuse(&mut wr, reason).await;
            return;
        }
        Ok(Some(other)) => {
            refuse(&mut wr, format!("expected hello, got {}", kind(&other))).await;
            return;
        }
        Ok(None) => return,
        Err(e) => {
            refuse(&mut wr, format!("bad frame: {e}")).await;
            return;
        }
    };
    let mut out = Vec::new();
    encode(
        &BridgeMsg::Welcome {
            version: BRIDGE_PROTOCOL_VERSION,
        },
        &mut out,
    );
    if wr.write_all(&out).await.is_err() {
        return;
    }
    tracing::info!(shard, "gateway shard connected");
    metrics::gauge!("bridge_gateway_connections").increment(1.0);

    let (tx, mut rx) = mpsc::unbounded_channel::<BridgeMsg>();
    let writer = tokio::spawn(async move {
        let mut out = Vec::with_capacity(64 * 1024);
        while let Some(first) = rx.recv().await {
            encode(&first, &mut out);
            while let Ok(more) = rx.try_recv() {
                encode(&more, &mut out);
                if out.len() > 1 << 20 {
                    break;
                }
            }
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    });
    loop {
        let msg = match read_frame(&mut rd, &mut buf).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                metrics::counter!("bridge_bad_frames_total").increment(1);
                tracing::warn!(shard, error = %e, "bad frame from a gateway shard; closing its connection");
                let _ = tx.send(BridgeMsg::Refuse {
                    reason: format!("bad frame: {e}"),
                });
                break;
            }
        };
        match msg {
            BridgeMsg::Persist {
                req,
                messages,
                events,
            } => {
                let job = CommitJob {
                    req,
                    messages,
                    events,
                    reply: tx.clone(),
                };
                if commits.send(job).await.is_err() {
                    break;
                }
            }
            BridgeMsg::LoadConv { req, conv, recent } => {
                let (reads, tx) = (reads.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = match reads.load_conv(conv, recent).await {
                        Ok(info) => BridgeMsg::ConvLoaded { req, conv, info },
                        Err(e) => BridgeMsg::Failed {
                            req,
                            reason: e.to_string(),
                        },
                    };
                    let _ = tx.send(reply);
                });
            }
            BridgeMsg::OpenConvs { req, limit } => {
                let (reads, tx) = (reads.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = match reads.store.open_conversations(limit).await {
                        Ok(convs) => BridgeMsg::OpenConvsAre { req, convs },
                        Err(e) => BridgeMsg::Failed {
                            req,
                            reason: e.to_string(),
                        },
                    };
                    let _ = tx.send(reply);
                });
            }
            BridgeMsg::History {
                req,
                conv,
                after,
                before,
                limit,
            } => {
                let (reads, tx) = (reads.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = match reads.history(conv, after, before, limit).await {
                        Ok(messages) => BridgeMsg::HistoryIs {
                            req,
                            conv,
                            messages,
                        },
                        Err(e) => BridgeMsg::Failed {
                            req,
                            reason: e.to_string(),
                        },
                    };
                    let _ = tx.send(reply);
                });
            }
            other => {
                tracing::warn!(
                    shard,
                    kind = kind(&other),
                    "unexpected frame from a gateway shard; closing its connection"
                );
                let _ = tx.send(BridgeMsg::Refuse {
                    reason: format!("unexpected {}", kind(&other)),
                });
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    metrics::gauge!("bridge_gateway_connections").decrement(1.0);
    tracing::info!(shard, "gateway shard disconnected");
}

async fn refuse(wr: &mut (impl AsyncWriteExt + Unpin), reason: String) {
    let mut out = Vec::new();
    encode(&BridgeMsg::Refuse { reason }, &mut out);
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
}

fn kind(m: &BridgeMsg) -> &'static str {
    match m {
        BridgeMsg::Hello { .. } => "hello",
        BridgeMsg::Welcome { .. } => "welcome",
        BridgeMsg::Refuse { .. } => "refuse",
        BridgeMsg::Persist { .. } => "persist",
        BridgeMsg::LoadConv { .. } => "load_conv",
        BridgeMsg::History { .. } => "history",
        BridgeMsg::Persisted { .. } => "persisted",
        BridgeMsg::Failed { .. } => "failed",
        BridgeMsg::ConvLoaded { .. } => "conv_loaded",
        BridgeMsg::HistoryIs { .. } => "history_is",
        BridgeMsg::OpenConvs { .. } => "open_convs",
        BridgeMsg::OpenConvsAre { .. } => "open_convs_are",
    }
}
