//! One shard at run time: its [`Shard`] state, its end of the cross-shard channel mesh, its
//! listener and its timers. Everything here runs on the shard's own pinned thread.
//!
//! Threading model: [`ShardCtx`] is shared by the shard's tasks through `Rc`; the shard state
//! sits in a `RefCell` that is borrowed only for the duration of one synchronous call into
//! the core, never across an `.await`. Other shards are reached only through the channel
//! mesh: one sender task and one receiver task per peer.

use crate::config::Config;
use crate::connection;
use crate::flush_gate::FlushGate;
use crate::metrics::ShardMetrics;
use crate::notify::Notify;
use crate::shard_ctx::{Batch, ShardCtx, SourceTicket};
use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::net::TcpListener;
use glommio::{Latency, Shares};
use metrics_exporter_prometheus::PrometheusHandle;
use std::cell::{Cell, RefCell};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::Shard;
use switchboard_protocol::token::TokenSigner;

/// Everything a shard needs to start; `Send`, built by the main thread.
pub struct ShardArgs {
    pub config: Config,
    pub signer: TokenSigner,
    pub listener: OwnedFd,
    /// The TLS listener's socket and its certificate, when `tls_listen` is set.
    pub tls: Option<(OwnedFd, Arc<switchboard_protocol::tls::TlsSource>)>,
    pub mesh: MeshBuilder<Batch, Full>,
    pub prometheus: PrometheusHandle,
    pub shutdown: Arc<AtomicBool>,
    pub seed: u64,
    /// This node's number in its cluster (0: no cluster).
    pub node: u16,
}

/// A clean stop: the shard's conversations hand back the seqs they leased and did not use,
/// so that the next start goes on at the next seq instead of skipping the lease
/// (docs/protocol.md, "Seqs"). Waits a moment for the bridge to confirm; if it does not,
/// the next start skips, which is safe.
async fn hand_back_leases(ctx: &ShardCtx) {
    ctx.with_shard(|s| s.release_leases());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pending = {
            let s = ctx.shard.borrow();
            s.bridge_in_flight() > 0 || s.has_bridge_requests()
        };
        if !pending {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(shard = ctx.id, "the storage bridge did not confirm the stop in time; conversations will skip their leases at the next start");
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends everything pending for `peer`, batch by batch, waiting when its channel is full.
async fn sender_task(ctx: Rc<ShardCtx>, senders: Rc<Senders<Batch>>, peer: usize) {
    loop {
        ctx.wake_sender[peer].wait().await;
        loop {
            let batch = std::mem::take(&mut *ctx.pending[peer].borrow_mut());
            if batch.is_empty() {
                break;
            }
            if senders.send_to(peer, batch).await.is_err() {
                // The peer has shut down; nothing more can reach it.
                return;
            }
            ctx.wake_congested();
        }
    }
}

/// Applies every batch from `peer` to the shard state.
async fn receiver_task(
    ctx: Rc<ShardCtx>,
    peer: usize,
    rx: glommio::channels::shared_channel::ConnectedReceiver<Batch>,
) {
    while let Some(batch) = rx.recv().await {
        let now = ctx.now();
        ctx.with_shard(|s| {
            let from = switchboard_core::routing::global(ctx.node, peer as u32);
            for msg in batch {
                s.on_shard_msg(from, msg, now);
            }
        });
        glommio::yield_if_needed().await;
    }
}

/// Timers: idle deadlines and queue updates every 250 ms, metrics every second, and the
/// shutdown flag set by the signal thread.
async fn ticker_task(ctx: Rc<ShardCtx>, shutdown: Arc<AtomicBool>) {
    let mut n: u64 = 0;
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        n += 1;
        let now = ctx.now();
        ctx.with_shard(|s| s.tick(now));
        if n % 4 == 0 {
            ctx.sources.borrow_mut().sweep(now.mono_ms);
            let stats = ctx.shard.borrow().stats().clone();
            let mut m = ctx.metrics.borrow_mut();
            m.publish(&stats);
            m.cross_pending.set(ctx.pending_total() as f64);
        }
        if shutdown.load(Ordering::Relaxed) && !ctx.stopping.get() {
            tracing::info!(
                shard = ctx.id,
                "shutting down: closing connections with 1001"
            );
            ctx.stopping.set(true);
            ctx.stop.notify();
            ctx.with_shard(|s| s.begin_shutdown());
        }
    }
}

/// Accepts connections until shutdown; at the open-files limit it backs off and goes on.
/// With `tls`, each connection is TLS with the newest certificate.
async fn accept_loop(
    ctx: Rc<ShardCtx>,
    listener: TcpListener,
    tls: Option<Arc<switchboard_protocol::tls::TlsSource>>,
) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            ctx.stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                // Refused before any TLS or HTTP work: the socket is closed at once.
                let Some(ticket) = admit(&ctx, &stream) else {
                    continue;
                };
                let spawned = match &tls {
                    None => glommio::spawn_local_into(
                        connection::serve(ctx.clone(), stream, ticket),
                        ctx.relay_queue,
                    ),
                    Some(tls) => glommio::spawn_local_into(
                        connection::serve_tls(ctx.clone(), stream, ticket, tls.current().into()),
                        ctx.relay_queue,
                    ),
                };
                match spawned {
                    Ok(t) => {
                        t.detach();
                    }
                    Err(e) => {
                        tracing::error!(shard = ctx.id, error = %e, "cannot spawn connection task")
                    }
                }
            }
            Some(Err(e)) => {
                let os = match &e {
                    glommio::GlommioError::IoError(io) => io.raw_os_error(),
                    _ => None,
                };
                let kind = match os {
                    Some(libc::EMFILE) | Some(libc::ENFILE) => "emfile",
                    Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "nomem",
                    _ => "other",
                };
                ctx.metrics.borrow().accept_error(kind);
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    last_warning = Some(Instant::now());
                    let open = ctx.shard.borrow().connection_count();
                    tracing::warn!(shard = ctx.id, kind, error = %e, open, "accept failed; backing off");
                }
                glommio::timer::sleep(Duration::from_millis(if kind == "other" {
                    10
                } else {
                    100
                }))
                .await;
            }
        }
    }
}

/// The connection's ticket in its source address's counts, or `None` when that address is
/// over a limit (counted in `chat_source_refused_total`).
fn admit(ctx: &Rc<ShardCtx>, stream: &glommio::net::TcpStream) -> Option<SourceTicket> {
    let ip = stream.peer_addr().ok()?.ip();
    let now = ctx.now();
    match ctx.sources.borrow_mut().admit(ip, now.mono_ms) {
        Ok(()) => Some(SourceTicket::new(ctx.clone(), ip)),
        Err(why) => {
            ctx.metrics.borrow().source_refused(why.as_str());
            None
        }
    }
}

/// A cluster node accepts once its bridge has said who the live nodes are (Redis answered),
/// so that its first clients' conversations are placed by the real membership and not
/// moved a moment later; without Redis it starts alone after `CLUSTER_WAIT`.
async fn wait_for_the_cluster(ctx: &ShardCtx) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    while ctx.cluster_redis.get() != Some(true) && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    if ctx.cluster_redis.get() != Some(true) {
        tracing::warn!(
            shard = ctx.id,
            "no word of the cluster from the bridge (Redis?): accepting as a node alone"
        );
    }
}

/// How long a cluster node waits for the membership before accepting anyway.
const CLUSTER_WAIT: Duration = Duration::from_secs(5);

/// The glommio listener over a socket from `server::bind_listeners`.
fn listener_of(fd: OwnedFd) -> TcpListener {
    // SAFETY: the fd is a bound, listening TCP socket created by `server::bind_listeners`,
    // owned by this shard alone from here on.
    #[allow(unsafe_code)]
    unsafe {
        <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd.into_raw_fd())
    }
}

/// The whole life of one shard.
pub async fn shard_main(args: ShardArgs) -> anyhow::Result<()> {
    let ShardArgs {
        config,
        signer,
        listener,
        tls,
        mesh,
        prometheus,
        shutdown,
        seed,
        node,
    } = args;
    let nr_shards = mesh.nr_peers();
    let (senders, mut receivers): (Senders<Batch>, Receivers<Batch>) = mesh
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("cannot join the channel mesh"))?;
    let id = senders.peer_id() as u32;
    // Not latency-sensitive by default: a `Latency::Matters` queue makes glommio lower its
    // preemption timer while the queue has work, which costs a timer armed and cancelled on
    // nearly every wake-up (bench/README.md, "Task queue latency").
    let latency = match config.task_queue_latency_us {
        0 => Latency::NotImportant,
        us => Latency::Matters(Duration::from_micros(us)),
    };
    let relay_queue = glommio::executor().create_task_queue(Shares::Static(1000), latency, "relay");
    let ws_config = connection::ws_config(&config);
    let global = switchboard_core::routing::global(node, id);
    let core = Shard::new(
        global,
        nr_shards as u32,
        config.core(),
        signer.clone(),
        seed,
    );
    let ctx = Rc::new(ShardCtx {
        id,
        node,
        nr_shards: nr_shards as u32,
        relay_out: RefCell::new(Default::default()),
        cluster_redis: Cell::new(None),
        shard: RefCell::new(core),
        signer,
        ws_config,
        metrics: RefCell::new(ShardMetrics::new(id)),
        prometheus,
        stopping: Cell::new(false),
        stop: Notify::default(),
        pending: (0..nr_shards).map(|_| RefCell::new(Vec::new())).collect(),
        wake_sender: (0..nr_shards).map(|_| Notify::default()).collect(),
        congestion_waiters: RefCell::new(Vec::new()),
        epoch: Instant::now(),
        relay_queue,
        bridge_wake: Notify::default(),
        flush_gate: FlushGate::default(),
        sources: RefCell::new(switchboard_core::source_limits::SourceLimits::new(
            switchboard_core::source_limits::Limits::share(
                config.source_limits(),
                nr_shards as u32,
            ),
        )),
        config,
    });
    let gate = ctx.clone();
    glommio::spawn_local_into(async move { gate.flush_gate.run().await }, relay_queue)
        .map_err(|e| anyhow::anyhow!("spawn: {e}"))?
        .detach();
    let senders = Rc::new(senders);
    for peer in (0..nr_shards).filter(|p| *p != id as usize) {
        glommio::spawn_local_into(sender_task(ctx.clone(), senders.clone(), peer), relay_queue)
            .map_err(|e| anyhow::anyhow!("spawn: {e}"))?
            .detach();
    }
    for (peer, rx) in receivers.streams() {
        glommio::spawn_local_into(receiver_task(ctx.clone(), peer, rx), relay_queue)
            .map_err(|e| anyhow::anyhow!("spawn: {e}"))?
            .detach();
    }
    glommio::spawn_local(ticker_task(ctx.clone(), shutdown)).detach();
    if ctx.config.bridge != crate::config::BridgeMode::Off {
        let link = crate::bridge_link::run(ctx.clone(), ctx.config.bridge_socket_path());
        glommio::spawn_local_into(link, relay_queue)
            .map_err(|e| anyhow::anyhow!("spawn: {e}"))?
            .detach();
    }

    if node != 0 {
        wait_for_the_cluster(&ctx).await;
    }
    tracing::debug!(shard = id, "accepting");
    let plain = accept_loop(ctx.clone(), listener_of(listener), None);
    match tls {
        None => plain.await,
        Some((fd, source)) => {
            let tls = accept_loop(ctx.clone(), listener_of(fd), Some(source));
            future::zip(plain, tls).await;
        }
    }

    // Drain: connections flush what is queued and close with 1001; wait for them.
    let deadline = Instant::now() + Duration::from_secs(ctx.config.shutdown_grace_s);
    while ctx.shard.borrow().connection_count() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let left = ctx.shard.borrow().connection_count();
    if left > 0 {
        tracing::warn!(
            shard = id,
            left,
            "grace period over; dropping remaining connections"
        );
    }
    if ctx.config.bridge != crate::config::BridgeMode::Off {
        hand_back_leases(&ctx).await;
    }
    tracing::info!(shard = id, "stopped");
    Ok(())
}
