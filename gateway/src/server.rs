//! Process level: bind one listening socket per shard (SO_REUSEPORT, our own backlog), build
//! the channel mesh, start one pinned glommio executor per shard, and wait for them.

use crate::config::Config;
use crate::runtime::{shard_main, ShardArgs};
use crate::shard_ctx::Batch;
use anyhow::Context;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use metrics_exporter_prometheus::PrometheusHandle;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// How long a start waits for a port held only by a previous process's closing connections.
const BIND_PATIENCE: Duration = Duration::from_secs(10);
/// How long it waits even while something listens on the port: a killed gateway's
/// listening sockets outlive it by some milliseconds (its io_uring instance is torn down
/// after the process, holding them).
const LISTENER_LINGER: Duration = Duration::from_secs(1);

/// [`bind_listeners`], tried again while the port is taken by what a killed gateway left:
/// right after a crash its listeners linger briefly and its connections are still closing
/// (FIN-WAIT-1), which refuses the bind, and a supervisor restarting it at once would fail.
/// A port someone still listens on after [`LISTENER_LINGER`] is an error then.
fn bind_listeners_after_a_crash(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
    patience: Duration,
) -> std::io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let started = Instant::now();
    let mut said = false;
    loop {
        match bind_listeners(addr, n, backlog) {
            Err(e)
                if e.kind() == ErrorKind::AddrInUse
                    && started.elapsed() < patience
                    && (started.elapsed() < LISTENER_LINGER.min(patience)
                        || !someone_listens_on(addr)) =>
            {
                if !said {
                    said = true;
                    tracing::warn!(%addr, "port still held by closing connections of an earlier process; waiting");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Whether a connection to `addr` (its loopback, for a wildcard address) is accepted.
fn someone_listens_on(addr: SocketAddr) -> bool {
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(500)).is_ok()
}

/// Runs the gateway until every shard has stopped (after `shutdown` is set).
pub fn run(
    config: Config,
    prometheus: PrometheusHandle,
    shutdown: Arc<AtomicBool>,
    tls: Option<Arc<switchboard_protocol::tls::TlsSource>>,
) -> anyhow::Result<()> {
    crate::preflight::check(&crate::preflight::Facts::of_this_process())?;
    let n = config.shard_count();
    let secret = config.load_secret()?;
    let signer = TokenSigner::new(&secret).context("token secret")?;
    let (listeners, addr) =
        bind_listeners_after_a_crash(config.listen, n, config.backlog, BIND_PATIENCE)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
    let mut tls_listeners: Vec<Option<OwnedFd>> = match (config.tls_listen, &tls) {
        (Some(at), Some(_)) => {
            let (fds, tls_addr) =
                bind_listeners_after_a_crash(at, n, config.backlog, BIND_PATIENCE)
                    .with_context(|| format!("cannot listen on {at} (tls_listen)"))?;
            // Tests and scripts wait for this exact line.
            println!("switchboard gateway listening for TLS on {tls_addr}");
            tracing::info!(%tls_addr, "listening for TLS");
            fds.into_iter().map(Some).collect()
        }
        _ => (0..n).map(|_| None).collect(),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(n, config.channel_capacity);
    let seed = fastrand::u64(..);
    // A node's number names its shards across the cluster; a new one at every start, so
    // that nothing addressed to an earlier run of this node reaches this one.
    let node: u16 = if config.cluster.enabled {
        fastrand::u16(1..)
    } else {
        0
    };
    if node != 0 {
        // Tests and scripts read this line.
        println!("switchboard cluster node {node} ({})", config.node_id());
        tracing::info!(node, id = %config.node_id(), "joining the cluster");
    }

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
            tls: tls_listeners[i].take().zip(tls.clone()),
            mesh: mesh.clone(),
            prometheus: prometheus.clone(),
            shutdown: shutdown.clone(),
            seed,
            node,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            .io_memory(config.io_memory_kib * 1024)
            .spin_before_park(std::time::Duration::from_micros(config.spin_before_park_us))
            .spawn(move || shard_main(args))
            .map_err(|e| anyhow::anyhow!("cannot start shard {i}: {e} (RLIMIT_MEMLOCK must cover 3 x io_memory_kib per shard, and glommio's 512 KiB: `kernel-tuning check` says how much)"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_the_port_is_told_apart_from_a_free_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(someone_listens_on(addr));
        let wildcard = SocketAddr::from(([0, 0, 0, 0], addr.port()));
        assert!(someone_listens_on(wildcard), "probed on loopback");
        drop(l);
        assert!(!someone_listens_on(addr));
    }

    #[test]
    fn a_port_someone_keeps_listening_on_fails_without_waiting_out_the_patience() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        let err =
            bind_listeners_after_a_crash(l.local_addr().unwrap(), 2, 16, Duration::from_secs(30))
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gave up once the listener outlived its linger"
        );
    }
}
