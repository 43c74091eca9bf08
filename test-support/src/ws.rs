//! A WebSocket client speaking Switchboard's protocol v1 (tokio-tungstenite), for tests
//! that talk to a gateway the way a well-behaved client library does. For what such a
//! library will not send, see [`crate::raw_ws`].
//!
//! Threading: a `Client` is used from one task; every read has the [`TIMEOUT`] deadline.

use crate::wait::TIMEOUT;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::VecDeque;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected client and the `welcome` frame it got.
pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
    /// Frames read while waiting for another type, in arrival order. Frames from
    /// different sources (an ack, which waits for storage, and a reply, which does not)
    /// have no fixed order, so tests wait for types, not positions.
    held: VecDeque<Value>,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Close(u16),
    NoCloseFrame,
}

impl Client {
    /// Connects and reads the `welcome` frame (an error: the upgrade was refused).
    pub async fn connect(url: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Client::welcomed(ws).await)
    }

    /// Connects from the loopback address `source` (e.g. `127.0.0.2`), and reads the
    /// `welcome`.
    pub async fn connect_from(
        url: &str,
        source: std::net::IpAddr,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("ws://HOST:PORT/...");
        let target: std::net::SocketAddr = host.parse().expect("an IP address and port");
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source, 0).into())?;
        let tcp = socket.connect(target).await?;
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        Ok(Client::welcomed(ws).await)
    }

    /// Connects over TLS (`wss://`) trusting what `tls` trusts, and reads the `welcome`.
    pub async fn connect_tls(
        url: &str,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
                .await?;
        Ok(Client::welcomed(ws).await)
    }

    /// A connected socket's client, once it has read the `welcome` frame.
    async fn welcomed(ws: Ws) -> Client {
        let mut c = Client {
            ws,
            welcome: Value::Null,
            held: Default::default(),
        };
        c.welcome = c.recv().await;
        assert_eq!(c.welcome["type"], "welcome", "{}", c.welcome);
        c
    }

    pub fn id(&self) -> String {
        self.welcome["id"].as_str().expect("an id").to_string()
    }

    pub fn shard(&self) -> u64 {
        self.welcome["shard"].as_u64().expect("a shard")
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("sent");
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::text(t.to_string()))
            .await
            .expect("sent");
    }

    /// A `msg` frame, in conversation `conv` if given.
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
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
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
