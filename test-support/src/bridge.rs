//! The `storage-bridge` binary run by a test: on a Unix socket in a directory of the
//! test's, with its HTTP API on a free port, an embedded SQLite store unless the test
//! gives it a `DATABASE_URL`, and no Redis unless given one. For the bridge's own tests and
//! for gateways run with `--bridge external`.

use crate::metrics::Metrics;
use crate::process::{bin_path, Proc};
use crate::wait::STARTUP;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The socket a bridge started in `dir` listens on (unless told otherwise).
pub fn socket_in(dir: &Path) -> PathBuf {
    dir.join("bridge.sock")
}

/// How to start a bridge; [`Bridge::builder`] makes one.
#[derive(Clone, Debug)]
pub struct BridgeBuilder {
    dir: PathBuf,
    socket: PathBuf,
    /// `--http`: `127.0.0.1:0` by default, `""` for none.
    http: String,
    log: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl BridgeBuilder {
    /// Extra flags (`--redis-url`, `--sqlite-max-bytes`, ...).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable (`DATABASE_URL`, `REDIS_URL`, ...); the test's own
    /// `DATABASE_URL` and `REDIS_URL` are never passed on.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Another socket path than [`socket_in`] the directory.
    pub fn socket(mut self, path: &Path) -> Self {
        self.socket = path.to_path_buf();
        self
    }

    /// Another `--http` address (`""`: no HTTP API).
    pub fn http(mut self, addr: &str) -> Self {
        self.http = addr.into();
        self
    }

    /// `SWITCHBOARD_LOG` (default `error`).
    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.into();
        self
    }

    /// The command, not started: for a test that expects the bridge to refuse to start.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin_path("storage-bridge"));
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--http", &self.http])
            .args(&self.args)
            .env("SWITCHBOARD_LOG", &self.log)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Started (its directory created if need be), once it says it listens.
    pub fn start(self) -> Bridge {
        std::fs::create_dir_all(&self.dir).expect("the bridge's directory");
        let mut proc = Proc::spawn("storage-bridge", &mut self.command());
        let mut http = None;
        proc.wait_for_line("that it listens", STARTUP, |line| {
            if let Some(a) = line
                .strip_prefix("storage-bridge http on ")
                .or_else(|| line.strip_prefix("storage-bridge https on "))
            {
                http = Some(a.trim().to_string());
            }
            line.starts_with("storage-bridge listening on ")
                .then_some(())
        });
        Bridge {
            proc,
            socket: self.socket.clone(),
            http,
            settings: self,
        }
    }
}

/// A running storage bridge; killed (by its PID) when dropped. Its directory is the
/// test's.
pub struct Bridge {
    proc: Proc,
    pub socket: PathBuf,
    /// Its HTTP API's address, when it has one.
    pub http: Option<String>,
    settings: BridgeBuilder,
}

impl Bridge {
    /// How to start one in `dir` (a store, a socket and a secret are kept there).
    pub fn builder(dir: &Path) -> BridgeBuilder {
        BridgeBuilder {
            dir: dir.to_path_buf(),
            socket: socket_in(dir),
            http: "127.0.0.1:0".into(),
            log: "error".into(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// One in `dir` with the defaults.
    pub fn start(dir: &Path) -> Bridge {
        Bridge::builder(dir).start()
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Sends it a signal by name (`HUP`: reload).
    pub fn signal(&self, name: &str) {
        self.proc.signal(name);
    }

    /// Killed if it runs, then started again with the same settings (a new HTTP port when
    /// it had `127.0.0.1:0`).
    pub fn restart(&mut self) {
        self.kill9();
        *self = self.settings.clone().start();
    }

    /// Flags that make a gateway use this bridge.
    pub fn gateway_args(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            "external".into(),
            "--bridge-socket".into(),
            self.socket.to_str().expect("a UTF-8 path").into(),
        ]
    }

    /// Its HTTP address; panics when started without one.
    pub fn http_addr(&self) -> &str {
        self.http
            .as_deref()
            .expect("the bridge has an HTTP address")
    }

    /// One scrape of its `/metrics`.
    pub fn metrics(&self) -> Metrics {
        Metrics::scrape(self.http_addr())
    }

    /// A metric's value now (see [`Metrics::value`]).
    pub fn metric(&self, name: &str, needles: &[&str]) -> f64 {
        self.metrics().value(name, needles)
    }
}
