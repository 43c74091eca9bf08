//! The `gateway` binary run by a test: 2 shards on `127.0.0.1:0` by default, in a data
//! directory of its own (removed when dropped) unless the test gives one, its storage
//! bridge spawned by itself (`--bridge-http` off unless asked for) or external; plus what a
//! test does with it: tokens, clients, HTTP, metrics, SIGTERM, SIGKILL and restart.

use crate::metrics::Metrics;
use crate::process::{bin_path, Proc};
use crate::wait::STARTUP;
use crate::ws::Client;
use crate::{dirs, http, ports};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// How to start a gateway; [`Gateway::builder`] makes one.
#[derive(Clone, Debug)]
pub struct GatewayBuilder {
    shards: usize,
    args: Vec<String>,
    data_dir: Option<PathBuf>,
    bridge_http: Option<String>,
    wrapper: Vec<String>,
    env: Vec<(String, String)>,
}

impl GatewayBuilder {
    /// An environment variable for the gateway (and the bridge it spawns, which inherits it).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Extra flags, after the harness's own (so they win).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// A TLS listener on `listen` with this certificate chain and key (PEM files, e.g.
    /// [`crate::tls::Leaf::write`]'s); its address is [`Gateway::tls_addr`].
    pub fn tls(self, listen: &str, cert: &Path, key: &Path) -> Self {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        self.args(&[
            "--tls-listen",
            listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
    }

    /// A data directory that outlives the gateway (for restarts, or a bridge beside it);
    /// without one the gateway gets a fresh directory, removed when it is dropped.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Serve the spawned bridge's HTTP API on `addr`; `start` waits until it listens.
    pub fn bridge_http(mut self, addr: &str) -> Self {
        self.bridge_http = Some(addr.into());
        self
    }

    /// Runs the gateway under a wrapper command (`["prlimit", "--nofile=64:64"]`), which
    /// must exec it (so the PID is the gateway's).
    pub fn wrap(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Started, once it has reported its address (and its bridge's HTTP API, if asked
    /// for, listens).
    pub fn start(self) -> Gateway {
        let (data_dir, owns_dir) = match &self.data_dir {
            Some(d) => (d.clone(), false),
            None => (dirs::temp_dir("gw"), true),
        };
        let (proc, addr) = self.spawn(&data_dir, "127.0.0.1:0");
        Gateway {
            proc,
            addr,
            data_dir,
            shards: self.shards,
            bridge_http: self.bridge_http.clone(),
            owns_dir,
            settings: self,
        }
    }

    fn spawn(&self, data_dir: &Path, listen: &str) -> (Proc, SocketAddr) {
        let exe = bin_path("gateway");
        let mut cmd = match self.wrapper.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut c = Command::new(wrapper);
                c.args(wrapper_args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--listen", listen, "--shards", &self.shards.to_string()])
            .args(["--bridge-http", self.bridge_http.as_deref().unwrap_or("")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(&self.args)
            .env("SWITCHBOARD_LOG", "error")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn("gateway", &mut cmd);
        let addr = proc.wait_for_line("its address", STARTUP, |line| {
            let rest = line.strip_prefix("switchboard gateway listening on ")?;
            rest.split_whitespace().next()?.parse().ok()
        });
        if let Some(http) = self.bridge_http.as_deref().filter(|a| !a.is_empty()) {
            ports::wait_listening(http, STARTUP);
        }
        (proc, addr)
    }
}

/// Flags that lift the per-source connection limits, for tests that open thousands of
/// connections from one loopback address on purpose (capacity, not abuse).
pub const NO_SOURCE_LIMITS: [&str; 8] = [
    "--max-connections-per-source",
    "0",
    "--max-unfinished-per-source",
    "0",
    "--new-connections-per-source-per-s",
    "0",
    "--new-connections-per-source-burst",
    "0",
];

/// A running gateway; killed (by its PID) when dropped, and its data directory removed if
/// the harness made it.
pub struct Gateway {
    proc: Proc,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// The spawned bridge's HTTP API, when asked for.
    pub bridge_http: Option<String>,
    /// Whether dropping the gateway removes `data_dir` (not when the test gave it).
    owns_dir: bool,
    settings: GatewayBuilder,
}

impl Gateway {
    /// How to start one: 2 shards, no bridge HTTP API, a fresh data directory.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            shards: 2,
            args: Vec::new(),
            data_dir: None,
            bridge_http: None,
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }

    /// One with the defaults plus `extra` flags.
    pub fn start(extra: &[&str]) -> Gateway {
        Gateway::builder().args(extra).start()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// SIGKILL, then the same gateway again at once: same address, data directory and
    /// settings (as systemd's `Restart=` would).
    pub fn restart(&mut self) {
        self.kill9();
        let (proc, addr) = self.settings.spawn(&self.data_dir, &self.addr.to_string());
        self.proc = proc;
        self.addr = addr;
    }

    /// SIGTERM: a graceful stop ([`Gateway::wait_exit`] waits for it).
    pub fn sigterm(&self) {
        self.proc.sigterm();
    }

    /// SIGHUP: reload (the TLS certificate; the bridge's AI files).
    pub fn sighup(&self) {
        self.proc.signal("HUP");
    }

    /// The TLS listener's address, when started with `--tls-listen` (printed before the
    /// plain one, so known once the gateway has started).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.proc.stdout_lines().iter().find_map(|line| {
            line.strip_prefix("switchboard gateway listening for TLS on ")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.proc.wait_exit(limit)
    }

    /// `ws://ADDR` followed by `path_and_query` (may be empty).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// The token secret the gateway generated in its data directory.
    pub fn secret_file(&self) -> PathBuf {
        self.data_dir.join("secret")
    }

    /// An agent token minted by the binary's own `token` command.
    pub fn token(&self, agent: &str) -> String {
        let out = Command::new(bin_path("gateway"))
            .args(["token", "--agent", agent, "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("gateway token");
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_string()
    }

    pub async fn agent(&self, name: &str) -> Client {
        let token = self.token(name);
        Client::connect(&self.url(&format!("/ws/agent?token={token}&client=web")))
            .await
            .expect("agent connects")
    }

    pub async fn visitor(&self) -> Client {
        Client::connect(&self.url("/ws/visitor?client=web"))
            .await
            .expect("visitor connects")
    }

    /// A visitor on a shard other than `not_on` (retries; SO_REUSEPORT spreads by hash).
    pub async fn visitor_not_on(&self, not_on: u64) -> Client {
        for _ in 0..100 {
            let v = self.visitor().await;
            if v.shard() != not_on {
                return v;
            }
        }
        panic!("could not land a visitor on another shard");
    }

    /// A plain HTTP GET on the gateway's port; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let r = http::get(&self.addr.to_string(), path, &[]);
        (r.status, r.text())
    }

    /// One scrape of its `/metrics`.
    pub fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.addr.to_string())
    }

    /// A metric's value now: the sum over series that contain every `needle` (see
    /// [`Metrics::value`]). Counters and gauges the shards keep are published once a
    /// second: wait for them with [`crate::wait`], do not sleep.
    pub fn metric(&self, name: &str, needles: &[&str]) -> f64 {
        self.metrics().value(name, needles)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.proc.kill9();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
