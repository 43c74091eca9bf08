//! What the integration tests of several crates share: a free loopback port, and a
//! redis-server of a test's own (the shared one on 6379 is left alone, so a test may
//! kill, restart or reload its Redis).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on now (the kernel's pick, outside any fixed range).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("bound")
        .port()
}

/// A redis-server on a free port with a directory of its own (for snapshots); killed (by
/// its PID) and its directory removed when dropped.
pub struct RedisProc {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisProc {
    /// A port and directory for a Redis to be started later with [`RedisProc::run`].
    pub fn reserve() -> RedisProc {
        let dir =
            std::env::temp_dir().join(format!("sb-redis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        RedisProc {
            child: None,
            port: free_port(),
            dir,
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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().expect("a UTF-8 path")])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required (scripts/ensure-services.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cmd("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
