//! Runs the storage bridge as a child process for the one-command start (`bridge = "spawn"`),
//! restarting it with backoff if it dies, and stopping it when the gateway stops.
//! Production runs the two as separate services (`bridge = "external"`).

use crate::config::Config;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Supervisor {
    /// Why a mutex: the supervising thread and the stopping thread share the child.
    child: Arc<Mutex<Option<Child>>>,
    stopping: Arc<AtomicBool>,
    /// The child's pid, for the signal thread (0 when none).
    pub pid: Arc<AtomicU32>,
}

fn bridge_executable(config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(p) = &config.bridge_command {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let candidate = exe.with_file_name("storage-bridge");
    if candidate.exists() {
        Ok(candidate)
    } else {
        anyhow::bail!(
            "cannot find the storage-bridge executable next to {} (build the workspace, set bridge_command, or use --bridge off)",
            exe.display()
        )
    }
}

impl Supervisor {
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let exe = bridge_executable(config)?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--socket")
            .arg(config.bridge_socket_path())
            .arg("--data-dir")
            .arg(&config.data_dir)
            .arg("--http")
            .arg(&config.bridge_http);
        if let Some(f) = &config.secret_file {
            cmd.arg("--secret-file").arg(f);
        }
        if let Some(f) = &config.ai_config {
            cmd.arg("--ai").arg(f);
        }
        // With TLS on the gateway, the bridge's API (and the console) is https, with the
        // same certificate; the gateway's SIGHUP reaches the bridge, which reloads it too.
        if let (Some(_), Some(cert), Some(key)) =
            (&config.tls_listen, &config.tls_cert, &config.tls_key)
        {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if config.cluster.enabled {
            cmd.arg("--cluster-redis")
                .arg(config.cluster.redis.join(","))
                .arg("--node-id")
                .arg(config.node_id())
                .arg("--advertise")
                .arg(match config.cluster.advertise.as_str() {
                    "" => config.listen.to_string(),
                    a => a.to_string(),
                })
                .arg("--cluster-heartbeat-ms")
                .arg(config.cluster.heartbeat_ms.to_string())
                .arg("--cluster-dead-after-ms")
                .arg(config.cluster.dead_after_ms.to_string());
            if config.cluster.redis_cluster {
                cmd.arg("--cluster-redis-cluster");
            }
            // Each node's recent-history cache has keys of its own (a bridge deletes, at
            // start, the keys under its prefix it did not write).
            if std::env::var_os("SWITCHBOARD_CACHE_PREFIX").is_none() {
                cmd.arg("--cache-prefix")
                    .arg(format!("sb:{}:", config.node_id()));
            }
        }
        // A secret given in the config file reaches the bridge's HTTP API too.
        if let Some(s) = &config.secret {
            cmd.env("SWITCHBOARD_SECRET", s);
        }
        die_with_parent(&mut cmd);
        let child =
            Arc::new(Mutex::new(Some(cmd.spawn().map_err(|e| {
                anyhow::anyhow!("starting {}: {e}", exe.display())
            })?)));
        let stopping = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicU32::new(
            child.lock().unwrap().as_ref().map_or(0, |c| c.id()),
        ));
        let (c, s, p) = (child.clone(), stopping.clone(), pid.clone());
        std::thread::Builder::new()
            .name("bridge-supervisor".into())
            .spawn(move || supervise(cmd, c, s, p))?;
        Ok(Self {
            child,
            stopping,
            pid,
        })
    }

    /// SIGTERM to the bridge, then wait for it (up to `grace`).
    pub fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(child) = guard.as_mut() {
            terminate(child.id());
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The bridge gets SIGTERM if the gateway dies without stopping it (SIGKILL, a crash), so a
/// spawned bridge never outlives its gateway.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe and touches no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends SIGTERM to a process we started.
pub fn terminate(pid: u32) {
    signal(pid, "TERM");
}

/// Sends signal `name` (`TERM`, `HUP`) to the bridge `pid` (0: none running).
pub fn signal(pid: u32, name: &str) {
    if pid != 0 {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status();
    }
}

fn supervise(
    mut cmd: Command,
    child: Arc<Mutex<Option<Child>>>,
    stopping: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut guard = child.lock().unwrap_or_else(|p| p.into_inner());
        let exited = match guard.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("not running".into()),
        };
        let Some(status) = exited else {
            backoff = Duration::from_millis(200);
            continue;
        };
        drop(guard);
        tracing::warn!(%status, restart_in_ms = backoff.as_millis() as u64, "storage bridge exited; restarting it");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match cmd.spawn() {
            Ok(c) => {
                pid.store(c.id(), Ordering::SeqCst);
                *child.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
            }
            Err(e) => tracing::error!(error = %e, "cannot restart the storage bridge"),
        }
    }
}
