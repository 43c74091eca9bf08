//! Test harness: the real `gateway` binary on port 0, real WebSocket clients
//! (tokio-tungstenite), and a raw TCP client for what a well-behaved client library will
//! not send.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway process owned by a test; killed (by its PID) when dropped.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// Whether dropping the gateway removes `data_dir` (not when a test restarts in it).
    owns_dir: bool,
}

impl Gateway {
    /// Starts `gateway` with 2 shards on 127.0.0.1:0 plus `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(2, extra, |_| {})
    }

    pub fn start_with(shards: usize, extra: &[&str], customise: impl FnOnce(&mut Command)) -> Self {
        let mut g = Self::start_at(&temp_dir("gw"), shards, extra, customise);
        g.owns_dir = true;
        g
    }

    /// Starts in a given data directory, which outlives the gateway (for restarts).
    pub fn start_at(
        data_dir: &std::path::Path,
        shards: usize,
        extra: &[&str],
        customise: impl FnOnce(&mut Command),
    ) -> Self {
        let data_dir = data_dir.to_path_buf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            &shards.to_string(),
            "--bridge-http",
            "",
            "--data-dir",
        ])
        .arg(&data_dir)
        .args(extra)
        .env("SWITCHBOARD_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        customise(&mut cmd);
        let mut child = cmd.spawn().expect("start gateway");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("switchboard gateway listening on ") {
                    let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not report its address in time: {:?}",
                    child.wait()
                );
            }
        };
        Self {
            child,
            addr,
            data_dir,
            shards,
            owns_dir: false,
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// An agent token minted by the binary's own `token` command.
    pub fn token(&self, agent: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["token", "--agent", agent, "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
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

    /// A plain HTTP GET; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of a metric line (sum over series that contain every `needle`).
    pub fn metric(&self, name: &str, needles: &[&str]) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.as_bytes().get(name.len()) == Some(&b'{')
                        || l.as_bytes().get(name.len()) == Some(&b' '))
            })
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "gateway did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sb-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A storage bridge run by a test (for `--bridge external`), killed when dropped.
pub struct BridgeProc {
    child: Child,
    pub socket: PathBuf,
    pub http: Option<String>,
    dir: PathBuf,
    envs: Vec<(String, String)>,
}

impl BridgeProc {
    pub fn start(dir: &std::path::Path, envs: &[(&str, &str)]) -> BridgeProc {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_gateway")).with_file_name("storage-bridge");
        assert!(
            exe.exists(),
            "{} is missing: build the workspace",
            exe.display()
        );
        let socket = dir.join("bridge.sock");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--socket",
            socket.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
        ])
        .env("SWITCHBOARD_LOG", "error")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut http = None;
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the bridge did not start");
            if let Some(a) = line.strip_prefix("storage-bridge http on ") {
                http = Some(a.trim().to_string());
            }
            if line.starts_with("storage-bridge listening on ") {
                break;
            }
        }
        BridgeProc {
            child,
            socket,
            http,
            dir: dir.to_path_buf(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same settings.
    pub fn restart(&mut self) {
        self.kill9();
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let fresh = BridgeProc::start(&self.dir, &envs);
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    /// Gateway flags to use this bridge.
    pub fn gateway_args(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            "external".into(),
            "--bridge-socket".into(),
            self.socket.to_str().unwrap().into(),
        ]
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every stored message in an embedded store: (conv, seq, sender, cid), in order.
pub fn stored_messages(dir: &std::path::Path) -> Vec<(i64, i64, String, String)> {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("switchboard.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut q = db
        .prepare("SELECT conv, seq, sender, cid FROM messages ORDER BY conv, seq")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking protocol v1.
pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
    /// Frames read while waiting for another type, in arrival order. Frames from
    /// different sources (an ack, which waits for storage, and a reply, which does not)
    /// have no fixed order, so tests wait for types, not positions.
    held: std::collections::VecDeque<Value>,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Close(u16),
    NoCloseFrame,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let mut c = Client {
            ws,
            welcome: Value::Null,
            held: Default::default(),
        };
        c.welcome = c.recv().await;
        assert_eq!(c.welcome["type"], "welcome", "{}", c.welcome);
        Ok(c)
    }

    pub fn id(&self) -> String {
        self.welcome["id"].as_str().unwrap().to_string()
    }

    pub fn shard(&self) -> u64 {
        self.welcome["shard"].as_u64().unwrap()
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::text(t.to_string())).await.unwrap();
    }

    pub async fn msg(&mut self, cid: &str, body: &str, conv: Option<&str>) {
        let mut v = serde_json::json!({"type":"msg","cid":cid,"body":body});
        if let Some(c) = conv {
            v["conv"] = c.into();
        }
        self.send(v).await;
    }

    /// The next text frame as JSON (panics after the timeout or on close).
    pub async fn recv(&mut self) -> Value {
        if let Some(v) = self.held.pop_front() {
            return v;
        }
        self.recv_new().await
    }

    async fn recv_new(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match m {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The first frame of type `ty`, from those held or the next ones; frames of other
    /// types are held for later.
    pub async fn expect(&mut self, ty: &str) -> Value {
        if let Some(i) = self.held.iter().position(|v| v["type"] == ty) {
            return self.held.remove(i).expect("in range");
        }
        loop {
            let v = self.recv_new().await;
            if v["type"] == ty {
                return v;
            }
            assert!(
                self.held.len() < 10_000,
                "expected {ty}; holding too many other frames"
            );
            self.held.push_back(v);
        }
    }

    /// The first frame whose type is one of `types` (others are held).
    pub async fn expect_any(&mut self, types: &[&str]) -> Value {
        let is = |v: &Value| types.contains(&v["type"].as_str().unwrap_or(""));
        if let Some(i) = self.held.iter().position(is) {
            return self.held.remove(i).expect("in range");
        }
        loop {
            let v = self.recv_new().await;
            if is(&v) {
                return v;
            }
            self.held.push_back(v);
        }
    }

    /// The next `assigned` frame; then resumes that conversation from the start, as an
    /// agent's client does (its messages follow, then `resumed`).
    pub async fn assigned(&mut self) -> Value {
        let a = self.expect("assigned").await;
        self.send(serde_json::json!({"type":"resume","conv":a["conv"],"last_seq":0}))
            .await;
        a
    }

    /// Reads until the server closes; returns the close code.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(Some(f)))) => return Ended::Close(u16::from(f.code)),
                Some(Ok(Message::Close(None))) => return Ended::Close(1005),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::NoCloseFrame,
            }
        }
    }
}

pub fn close_code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// A raw TCP client: upgrade by hand, then send arbitrary frames.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Raw { s }
    }

    /// Sends a request head and returns the response head.
    pub fn request(&mut self, head: &str) -> String {
        self.s.write_all(head.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            match self.s.read(&mut b) {
                Ok(1) => got.push(b[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    pub fn upgrade(addr: SocketAddr, path: &str) -> Raw {
        let mut r = Raw::connect(addr);
        let head = r.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ));
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        r
    }

    /// Sends one masked frame.
    pub fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    /// Reads server frames until a close frame (returns its code) or EOF (None).
    pub fn read_until_close(&mut self) -> Option<u16> {
        let mut buf = Vec::new();
        let _ = self.s.read_to_end(&mut buf);
        let mut i = 0;
        while i + 2 <= buf.len() {
            let opcode = buf[i] & 0x0f;
            let mut len = (buf[i + 1] & 0x7f) as usize;
            let mut p = i + 2;
            if len == 126 {
                len = u16::from_be_bytes([buf[p], buf[p + 1]]) as usize;
                p += 2;
            } else if len == 127 {
                len = u64::from_be_bytes(buf[p..p + 8].try_into().unwrap()) as usize;
                p += 8;
            }
            if opcode == 8 && len >= 2 && p + 2 <= buf.len() {
                return Some(u16::from_be_bytes([buf[p], buf[p + 1]]));
            }
            i = p + len;
        }
        None
    }
}

/// The Python virtualenv with the third-party tools (`websockets`, `kosoku`), made by
/// `scripts/setup-test-env.sh`. Missing tools fail the test loudly, never skip it.
pub fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("SWITCHBOARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let bin = venv.join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-test-env.sh (or set SWITCHBOARD_VENV)",
        bin.display()
    );
    bin
}

/// A plain HTTP GET's whole response (head and body) as text.
pub fn http_get_text(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
