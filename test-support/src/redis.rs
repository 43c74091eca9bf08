//! A redis-server of a test's own, on a free port with a directory of its own (the shared
//! one on 6379 is left alone, so a test may kill, restart or reload its Redis), and a few
//! inline commands to look into it.

use crate::process::Proc;
use crate::{dirs, ports, wait};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A redis-server, killed (by its PID) and its directory removed when dropped.
pub struct RedisProc {
    proc: Option<Proc>,
    port: u16,
    dir: PathBuf,
    /// More flags for redis-server (cluster mode).
    extra: Vec<String>,
}

impl RedisProc {
    /// A port and directory for a Redis to be started later with [`RedisProc::run`].
    pub fn reserve() -> RedisProc {
        RedisProc {
            proc: None,
            port: ports::free_port(),
            dir: dirs::temp_dir("redis"),
            extra: Vec::new(),
        }
    }

    /// Started and answering PING.
    pub fn start() -> RedisProc {
        let mut r = RedisProc::reserve();
        r.run();
        r
    }

    /// Starts it (again: it loads the snapshot in its directory, if any) and waits for
    /// PING. `DEBUG` is allowed from loopback, for tests that reload a snapshot.
    pub fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().expect("a UTF-8 path")])
            .args(["--enable-debug-command", "local"])
            .args(&self.extra);
        self.proc = Some(Proc::spawn(
            "redis-server (scripts/ensure-services.sh installs it)",
            &mut cmd,
        ));
        wait::eventually(
            "redis-server to answer PING",
            wait::TIMEOUT,
            || self.cmd("PING"),
            |r| r.as_deref() == Some("+PONG"),
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One inline command; the first line of the reply (`None`: not answering).
    pub fn cmd(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// Every key matching `pattern` (KEYS is fine on a test's own Redis).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis answers");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a timeout");
        s.write_all(format!("KEYS {pattern}\r\n").as_bytes())
            .expect("sent");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("a reply");
        let n: usize = line
            .trim_end()
            .trim_start_matches('*')
            .parse()
            .expect("an array reply");
        let mut keys = Vec::new();
        for _ in 0..n {
            line.clear();
            r.read_line(&mut line).expect("a length"); // $len
            line.clear();
            r.read_line(&mut line).expect("a key");
            keys.push(line.trim_end().to_string());
        }
        keys
    }

    /// Kills it (SIGKILL); [`RedisProc::run`] starts it again.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `n` masters (no replicas), each a [`RedisProc`] in cluster mode, its
/// slots assigned by `redis-cli --cluster create`; killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisProc>,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<RedisProc> = (0..n)
            .map(|_| {
                let mut r = RedisProc::reserve();
                r.extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
                    .map(String::from)
                    .to_vec();
                r.run();
                r
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is required (scripts/ensure-services.sh installs it)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for r in &nodes {
            wait::eventually(
                "the Redis Cluster to be ok",
                wait::TIMEOUT,
                || {
                    let mut s = TcpStream::connect(("127.0.0.1", r.port)).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    s.write_all(b"CLUSTER INFO\r\n").ok()?;
                    let mut text = String::new();
                    let mut rd = BufReader::new(s);
                    let mut line = String::new();
                    rd.read_line(&mut line).ok()?;
                    line.clear();
                    rd.read_line(&mut line).ok()?;
                    text.push_str(&line);
                    Some(text)
                },
                |t| t.as_deref().is_some_and(|t| t.contains("cluster_state:ok")),
            );
        }
        RedisCluster { nodes }
    }

    /// The seeds, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisProc::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::RedisProc;

    #[test]
    fn a_redis_of_its_own_answers_keeps_keys_and_can_be_killed() {
        let mut r = RedisProc::start();
        assert_eq!(r.cmd("SET sb:t 1").as_deref(), Some("+OK"));
        assert_eq!(r.keys("sb:*"), ["sb:t"]);
        r.kill();
        assert_eq!(r.cmd("PING"), None);
    }
}
