//! One shard's connection to the storage bridge, over its Unix socket: bytes in, bytes out.
//!
//! Everything about requests (what is in flight, what to send again after a reconnect, how
//! large a request may be, when to give up on one) is the core's `StoreLink`; this task
//! connects, writes what the shard has for the bridge, and hands answers back. When the
//! bridge goes away it reconnects with backoff and the shard writes its requests again.
//! Meanwhile the shard goes on relaying; only acks wait, and past the core's bound new
//! messages get `overloaded`.

use crate::shard_ctx::ShardCtx;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::UnixStream;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};
use switchboard_protocol::bridge::{
    decode, encode, BotMode, BridgeMsg, SiteRules, BRIDGE_PROTOCOL_VERSION,
};
use switchboard_protocol::throttle::LogThrottle;

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

/// The link after `welcome`: the stream, the bytes read past it, when the bot answers (the
/// bridge's AI configuration), the disabled accounts and the sites.
type Welcomed = (UnixStream, Vec<u8>, BotMode, Vec<String>, Vec<SiteRules>);

/// Connects and says hello.
async fn handshake(path: &Path, shard: u32, node: u16, shards: u32) -> Result<Welcomed, LinkError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let mut out = Vec::new();
    let hello = BridgeMsg::Hello {
        version: BRIDGE_PROTOCOL_VERSION,
        shard,
        node,
        shards,
    };
    encode(&hello, &mut out)?;
    stream.write_all(&out).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match decode(&mut buf)? {
            Some(BridgeMsg::Welcome {
                version,
                bot,
                disabled,
                sites,
            }) if version == BRIDGE_PROTOCOL_VERSION => {
                return Ok((stream, buf, bot, disabled, sites))
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

enum Event {
    Read(std::io::Result<usize>),
    Wake,
}

/// Runs for the shard's lifetime.
pub async fn run(ctx: Rc<ShardCtx>, path: std::path::PathBuf) {
    // How long acks wait on storage: persist request written -> confirmed (resends included).
    let confirm =
        metrics::histogram!(crate::metrics::STORAGE_CONFIRM_SECONDS, "shard" => ctx.id.to_string());
    let up = metrics::gauge!("chat_bridge_up", "shard" => ctx.id.to_string());
    let epoch = Instant::now();
    let now_us = move || epoch.elapsed().as_micros() as u64;
    let mut backoff = Duration::from_millis(50);
    // The same warning over and over (a bridge that keeps failing) is logged every 5 s.
    let mut warnings = LogThrottle::new(5_000);
    let mut connected_once = false;
    loop {
        let (mut stream, mut buf, bot, disabled, sites) = match handshake(
            &path,
            ctx.id,
            ctx.node,
            ctx.nr_shards,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                up.set(0.0);
                let now = ctx.now();
                if let Some(repeats) = warnings.allow(&e.to_string(), now.mono_ms) {
                    let waiting = ctx.shard.borrow().bridge_in_flight();
                    tracing::warn!(shard = ctx.id, error = %e, waiting, repeats, "storage bridge unavailable; retrying");
                }
                // Only the timer: requests keep arriving while the bridge is away (they
                // wait in the core), and each would otherwise cut the backoff short.
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        up.set(1.0);
        backoff = Duration::from_millis(50);
        let mut out = Vec::new();
        let resending = ctx.with_shard(|s| {
            let n = s.bridge_in_flight();
            s.bridge_relinked(&mut out, now_us(), ctx.now());
            n
        });
        if connected_once || resending > 0 {
            tracing::info!(shard = ctx.id, resending, "connected to the storage bridge");
        }
        if ctx.id == switchboard_core::routing::DISPATCHER_SHARD {
            tracing::info!(mode = bot.as_str(), "the bridge says when the bot answers");
        }
        ctx.with_shard(|s| {
            s.agents_disabled(&disabled);
            s.sites_are(&sites);
            s.bridge_welcomed(bot, ctx.now())
        });
        connected_once = true;
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
                            if let BridgeMsg::Persisted { req } = msg {
                                if let Some(sent) = ctx.shard.borrow().bridge_sent_at_us(req) {
                                    confirm.record(now_us().saturating_sub(sent) as f64 / 1e6);
                                }
                            }
                            match msg {
                                BridgeMsg::Cluster { nodes, redis } => {
                                    crate::cluster::view_changed(&ctx, &nodes, redis, now)
                                }
                                BridgeMsg::Relay { items } => {
                                    crate::cluster::relayed(&ctx, items, now)
                                }
                                msg => ctx.with_shard(|s| s.on_bridge(msg, now)),
                            }
                        }
                        glommio::yield_if_needed().await;
                    }
                }
                ctx.with_shard(|s| s.write_bridge_requests(&mut out, now_us(), ctx.now()));
                crate::cluster::write_relays(&ctx, &mut out);
            }
        }
        .await;
        up.set(0.0);
        ctx.with_shard(|s| s.bridge_link_lost(ctx.now()));
        if let Err(e) = result {
            if let Some(repeats) = warnings.allow(&e.to_string(), ctx.now().mono_ms) {
                tracing::warn!(shard = ctx.id, error = %e, repeats, "lost the storage bridge; reconnecting");
            }
        }
    }
}
