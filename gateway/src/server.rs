//! Process level: bind one listening socket per shard (SO_REUSEPORT, our own backlog), build
//! the channel mesh, start one pinned glommio executor per shard, and wait for them.

use crate::config::Config;
use crate::runtime::{shard_main, Batch, ShardArgs};
use anyhow::Context;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use metrics_exporter_prometheus::PrometheusHandle;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use switchboard_protocol::token::TokenSigner;

/// `n` sockets listening on the same address; with port 0 the first picks the port and the
/// rest join it.
pub fn bind_listeners(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> std::io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let tcp_socket = |addr: SocketAddr| -> std::io::Result<Socket> {
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let sk = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        sk.set_reuse_address(true)?;
        Ok(sk)
    };
    let mut addr = addr;
    if addr.port() != 0 {
        // SO_REUSEPORT would let a second gateway (same user) share the port and silently
        // take half the connections. A probe without it fails if anyone holds the port.
        tcp_socket(addr)?.bind(&addr.into())?;
    }
    let mut fds = Vec::with_capacity(n);
    for _ in 0..n {
        let sk = tcp_socket(addr)?;
        sk.set_reuse_port(true)?;
        sk.bind(&addr.into())?;
        sk.listen(backlog as i32)?;
        if addr.port() == 0 {
            addr = sk.local_addr()?.as_socket().expect("an IP socket");
        }
        fds.push(OwnedFd::from(sk));
    }
    Ok((fds, addr))
}

/// Runs the gateway until every shard has stopped (after `shutdown` is set).
pub fn run(
    config: Config,
    prometheus: PrometheusHandle,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    crate::preflight::check(&crate::preflight::Facts::of_this_process())?;
    let n = config.shard_count();
    let secret = config.load_secret()?;
    let signer = TokenSigner::new(&secret).context("token secret")?;
    let (listeners, addr) = bind_listeners(config.listen, n, config.backlog)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(n, config.channel_capacity);
    let seed = fastrand::u64(..);

    let mut handles = Vec::with_capacity(n);
    for (i, listener) in listeners.into_iter().enumerate() {
        let placement = if config.pin {
            Placement::Fixed(i % cpus)
        } else {
            Placement::Unbound
        };
        let args = ShardArgs {
            config: config.clone(),
            signer: signer.clone(),
            listener,
            mesh: mesh.clone(),
            prometheus: prometheus.clone(),
            shutdown: shutdown.clone(),
            seed,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            .io_memory(config.io_memory_kib * 1024)
            .spin_before_park(std::time::Duration::from_micros(config.spin_before_park_us))
            .spawn(move || shard_main(args))
            .map_err(|e| anyhow::anyhow!("cannot start shard {i}: {e} (RLIMIT_MEMLOCK must cover io_memory_kib per shard)"))?;
        handles.push(handle);
    }
    // Tests and scripts wait for this exact line.
    println!("switchboard gateway listening on {addr} with {n} shards");
    tracing::info!(%addr, shards = n, "listening");

    let mut failed = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(anyhow::anyhow!("shard {i}: {e:#}")),
            Err(e) => failed = Some(anyhow::anyhow!("shard {i} crashed: {e}")),
        }
    }
    failed.map_or(Ok(()), Err)
}
