//! One client connection, from TCP accept to close, as a single task (no split, no lock).
//!
//! 0. On the TLS listener: a first byte that is not a TLS handshake gets a plain-text 400 and
//!    a close; otherwise the TLS handshake, within the handshake deadline. Everything after
//!    is the same for both, generic over the byte stream (no cost on the plain path).
//! 1. Read the HTTP request head within the handshake deadline and header cap.
//! 2. Answer `/healthz` and `/metrics`, refuse anything else that is not a valid, authorised
//!    upgrade, or switch to WebSocket.
//! 3. Loop: write what the core queued for this connection (batched, one flush), then read
//!    the next frame and hand it to the core. The core wakes this task when it queues more.
//! 4. Close with the code the core or the protocol asked for, and tell the core it is gone.

use crate::http::{self, Parsed, Route};
use crate::shard_ctx::{ShardCtx, SourceTicket};
use crate::whole_reads::WholeReads;
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use futures_util::Sink;
use glommio::net::TcpStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};
use switchboard_core::auth::authenticate;
use switchboard_core::{ConnKey, Identity};
use switchboard_protocol::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

/// Time allowed for the closing handshake before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type Ws<S> = WebSocketStream<WholeReads<S>>;

/// A client's byte stream: the TCP socket, or TLS over it.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + 'static> ByteStream for S {}

/// tungstenite limits from our configuration: every buffer explicit and small.
pub fn ws_config(cfg: &crate::config::Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        // Frames are buffered until our explicit flush, so a batch is one write. (With 0,
        // tungstenite writes every frame to the socket as it is fed: one sendto per frame,
        // which is what this gateway did until the persistence benchmark counted them.)
        .write_buffer_size(cfg.max_outbox_bytes)
        .max_write_buffer_size(cfg.max_outbox_bytes + cfg.max_message_bytes)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes))
}

enum HeadError {
    TooLarge,
    Bad(String),
    Io,
}

/// Reads until the request head is complete. Returns it and any bytes after it.
async fn read_head(
    stream: &mut impl ByteStream,
    max: usize,
) -> Result<(http::Request, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_head(&buf) {
            Ok(Parsed::Complete { request, len }) => return Ok((request, buf.split_off(len))),
            Ok(Parsed::Partial) if buf.len() >= max => return Err(HeadError::TooLarge),
            Ok(Parsed::Partial) => {}
            Err(e) => return Err(HeadError::Bad(e.0)),
        }
    }
}

async fn reply(ctx: &ShardCtx, stream: &mut impl ByteStream, status: u16, message: &str) {
    if status >= 400 {
        ctx.metrics.borrow().refused(status);
    }
    answer(stream, &http::error_response(status, message)).await;
}

/// Writes a whole HTTP response and ends the stream (over TLS: with its close_notify).
async fn answer(stream: &mut impl ByteStream, response: &[u8]) {
    let _ = stream.write_all(response).await;
    let _ = stream.close().await;
}

/// `f`, or `None` once `deadline` has passed.
async fn by<T>(deadline: Instant, f: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await
}

/// The end of the handshake (TLS, if any, and the request head): `handshake_timeout_ms`
/// after the accept.
fn handshake_deadline(ctx: &ShardCtx) -> Instant {
    Instant::now() + Duration::from_millis(ctx.config.handshake_timeout_ms)
}

/// Serves one connection accepted on the plain listener to its end.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream, ticket: SourceTicket) {
    let _ = stream.set_nodelay(true);
    let deadline = handshake_deadline(&ctx);
    serve_stream(ctx, stream, ticket, deadline).await;
}

/// Serves one connection accepted on the TLS listener to its end.
pub async fn serve_tls(
    ctx: Rc<ShardCtx>,
    mut stream: TcpStream,
    ticket: SourceTicket,
    acceptor: futures_rustls::TlsAcceptor,
) {
    let _ = stream.set_nodelay(true);
    let deadline = handshake_deadline(&ctx);
    let mut b = [0u8; 1];
    let first = by(deadline, async {
        let n = stream.peek(&mut b).await.ok();
        n.filter(|n| *n == 1).map(|_| b[0])
    })
    .await;
    match first {
        None => return reply(&ctx, &mut stream, 408, "nothing received in time").await,
        Some(None) => return,
        Some(Some(switchboard_protocol::tls::HANDSHAKE_RECORD)) => {}
        // Plain HTTP (or anything else) on the TLS port: told so in plain text, closed.
        Some(Some(_)) => {
            ctx.metrics.borrow().tls_refused("plaintext");
            return reply(
                &ctx,
                &mut stream,
                400,
                "this port speaks TLS: use https:// or wss://",
            )
            .await;
        }
    }
    match by(deadline, acceptor.accept(stream)).await {
        Some(Ok(tls)) => serve_stream(ctx, tls, ticket, deadline).await,
        Some(Err(_)) => ctx.metrics.borrow().tls_refused("handshake"),
        None => ctx.metrics.borrow().tls_refused("timeout"),
    }
}

/// Serves a connection's byte stream: the HTTP request, then its answer or the WebSocket.
async fn serve_stream<S: ByteStream>(
    ctx: Rc<ShardCtx>,
    stream: S,
    ticket: SourceTicket,
    deadline: Instant,
) {
    // The handshake's states (the head being read, the answers that end it) are boxed and
    // freed once it is over: a task keeps its future's largest state for its whole life, and
    // an idle connection should pay only for the WebSocket's.
    match Box::pin(handshake(&ctx, stream, ticket, deadline)).await {
        None => {}
        Some((Upgraded::Echo, stream, leftover, _)) => {
            echo(websocket(&ctx, stream, leftover).await).await
        }
        Some((Upgraded::Chat(identity), stream, leftover, _ticket)) => {
            let ws = websocket(&ctx, stream, leftover).await;
            run(ctx, ws, identity).await;
        }
    }
}

/// What a finished handshake asks for.
enum Upgraded {
    Chat(Identity),
    Echo,
}

/// Reads the request head and answers anything but an upgrade; for an upgrade, the stream
/// with the bytes read past the head (and the source's ticket, held for the connection's
/// life).
async fn handshake<S: ByteStream>(
    ctx: &Rc<ShardCtx>,
    mut stream: S,
    mut ticket: SourceTicket,
    deadline: Instant,
) -> Option<(Upgraded, S, Vec<u8>, SourceTicket)> {
    let head = by(
        deadline,
        read_head(&mut stream, ctx.config.max_header_bytes),
    )
    .await;
    let (request, leftover) = match head {
        None => {
            reply(ctx, &mut stream, 408, "request head not received in time").await;
            return None;
        }
        Some(Err(HeadError::TooLarge)) => {
            reply(ctx, &mut stream, 431, "request head too large").await;
            return None;
        }
        Some(Err(HeadError::Bad(why))) => {
            reply(ctx, &mut stream, 400, &why).await;
            return None;
        }
        Some(Err(HeadError::Io)) => return None,
        Some(Ok(x)) => x,
    };
    ticket.finish();
    let identity = match http::route(
        &request,
        &ctx.config.allowed_origins,
        ctx.config.echo_path.as_deref(),
    ) {
        Route::Health if ctx.stopping.get() => {
            reply(ctx, &mut stream, 503, "draining").await;
            return None;
        }
        Route::Health => {
            // Without Redis a cluster node still serves its own conversations: it stays in
            // the load balancer, and says what it cannot do.
            let body: &[u8] = match ctx.cluster_redis.get() {
                Some(false) => b"degraded: redis unreachable; serving this node's conversations, relaying to other nodes when it is back\n",
                _ => b"ok\n",
            };
            answer(&mut stream, &http::response(200, "text/plain", body)).await;
            return None;
        }
        Route::Metrics => {
            crate::metrics::publish_fd_usage();
            let body = ctx.prometheus.render();
            let response = http::response(200, "text/plain; version=0.0.4", body.as_bytes());
            answer(&mut stream, &response).await;
            return None;
        }
        Route::Reject { status, message } => {
            reply(ctx, &mut stream, status, message).await;
            return None;
        }
        Route::Asset(asset) => {
            let response = http::response(200, asset.content_type, asset.body);
            answer(&mut stream, &response).await;
            return None;
        }
        Route::Echo { key } => {
            if stream
                .write_all(&http::switching_protocols(key))
                .await
                .is_err()
            {
                return None;
            }
            return Some((Upgraded::Echo, stream, leftover, ticket));
        }
        Route::Upgrade { .. } if ctx.stopping.get() => {
            reply(ctx, &mut stream, 503, "shutting down").await;
            return None;
        }
        Route::Upgrade { path, query, key } => {
            let now = ctx.now();
            let auth = authenticate(path, query, &ctx.signer, now.unix_ms / 1000, || {
                ctx.shard.borrow_mut().new_visitor_id()
            });
            let disabled = |i: &switchboard_core::Identity| match &i.who {
                switchboard_protocol::ParticipantId::Agent(a) => ctx.shard.borrow().is_disabled(a),
                switchboard_protocol::ParticipantId::Visitor(_) => false,
            };
            // A visitor's site must exist, and allow the page it comes from.
            let auth = auth.and_then(|i| match &i.who {
                switchboard_protocol::ParticipantId::Visitor(_) => ctx
                    .shard
                    .borrow()
                    .site_admits(i.site.as_deref(), request.origin.as_deref())
                    .map(|()| i),
                switchboard_protocol::ParticipantId::Agent(_) => Ok(i),
            });
            match auth {
                Ok(identity) if disabled(&identity) => {
                    reply(ctx, &mut stream, 403, "account disabled").await;
                    return None;
                }
                Ok(identity) => {
                    if stream
                        .write_all(&http::switching_protocols(key))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                    identity
                }
                // The reason is generic on purpose: tokens are never echoed or logged.
                Err(e) => {
                    reply(ctx, &mut stream, e.status(), &e.to_string()).await;
                    return None;
                }
            }
        }
    };
    drop(request);
    Some((Upgraded::Chat(identity), stream, leftover, ticket))
}

/// The WebSocket over an upgraded socket; `leftover` is what was read past the request head.
async fn websocket<S: ByteStream>(ctx: &ShardCtx, stream: S, leftover: Vec<u8>) -> Ws<S> {
    WebSocketStream::from_partially_read(
        WholeReads::new(stream),
        leftover,
        Role::Server,
        Some(ctx.ws_config),
    )
    .await
}

/// What woke the connection loop.
enum Step {
    Frame(Message),
    /// The peer ended the stream (after a close handshake or not).
    PeerGone,
    Fail(tungstenite::Error),
    /// The core asked to close with this code.
    Close(CloseCode),
    /// Everything queued is written and the core asked to hear of it (a paged replay).
    Drained,
}

async fn run<S: ByteStream>(ctx: Rc<ShardCtx>, mut ws: Ws<S>, identity: Identity) {
    let now = ctx.now();
    let key = ctx.with_shard(|s| s.connect(identity, now));
    let reason = drive(&ctx, key, &mut ws).await;
    ctx.with_shard(|s| s.disconnect(key));
    ctx.metrics.borrow().closed(reason);
}

/// The connection loop; returns the close reason for metrics.
async fn drive<S: ByteStream>(ctx: &ShardCtx, key: ConnKey, ws: &mut Ws<S>) -> &'static str {
    let mut need_flush = false;
    loop {
        ctx.uncongested().await;
        let step = std::future::poll_fn(|cx| {
            let mut shard = ctx.shard.borrow_mut();
            let Some(io) = shard.io(key) else {
                return Poll::Ready(Step::Close(CloseCode::InternalError));
            };
            if !io.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                io.waker = Some(cx.waker().clone());
            }
            if io.close == Some(CloseCode::SlowConsumer) {
                return Poll::Ready(Step::Close(CloseCode::SlowConsumer));
            }
            // Write, when this turn's writes go out (see `flush_gate`): feed every queued
            // frame, then flush once.
            let wants_write = io.ping_due || !io.outbox.is_empty() || need_flush;
            let may_write = wants_write && ctx.flush_gate.pass(cx);
            while may_write && (io.ping_due || !io.outbox.is_empty()) {
                match Pin::new(&mut *ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::Fail(e)),
                    Poll::Pending => break,
                }
                let msg = if io.ping_due {
                    io.ping_due = false;
                    Message::Ping(Bytes::new())
                } else {
                    let frame = io.outbox.pop().expect("not empty");
                    Message::Text(Utf8Bytes::try_from(frame).expect("server frames are JSON text"))
                };
                if let Err(e) = Pin::new(&mut *ws).start_send(msg) {
                    return Poll::Ready(Step::Fail(e));
                }
                need_flush = true;
            }
            if may_write && need_flush {
                match Pin::new(&mut *ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => need_flush = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::Fail(e)),
                    Poll::Pending => {}
                }
            }
            if let Some(code) = io.close {
                if io.outbox.is_empty() {
                    return Poll::Ready(Step::Close(code));
                }
            }
            if io.drain_wanted && io.outbox.is_empty() && !need_flush {
                io.drain_wanted = false;
                return Poll::Ready(Step::Drained);
            }
            drop(shard);
            // Read.
            match futures_lite::Stream::poll_next(Pin::new(&mut *ws), cx) {
                Poll::Ready(Some(Ok(m))) => Poll::Ready(Step::Frame(m)),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Step::Fail(e)),
                Poll::Ready(None) => Poll::Ready(Step::PeerGone),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match step {
            Step::Frame(Message::Text(text)) => {
                let start = Instant::now();
                let now = ctx.now();
                ctx.with_shard(|s| s.on_text(key, text.as_str(), now));
                ctx.metrics
                    .borrow()
                    .process
                    .record(start.elapsed().as_secs_f64());
            }
            Step::Frame(Message::Binary(_)) => {
                let now = ctx.now();
                ctx.with_shard(|s| s.on_binary(key, now));
            }
            Step::Frame(_) => {
                // Ping, pong, close: tungstenite queued any reply; it goes out with the next flush.
                let now = ctx.now();
                ctx.shard.borrow_mut().touch(key, now);
                need_flush = true;
            }
            Step::Drained => {
                let now = ctx.now();
                ctx.with_shard(|s| s.on_drained(key, now));
            }
            Step::PeerGone => return "peer_closed",
            Step::Fail(e) => {
                // Reset, broken pipe, closed: nobody left to tell.
                let Some(code) = close_code_for(&e) else {
                    return "peer_gone";
                };
                finish_close(ws, code).await;
                return code.reason();
            }
            Step::Close(code) => {
                finish_close(ws, code).await;
                return code.reason();
            }
        }
        glommio::yield_if_needed().await;
    }
}

/// The test-only echo endpoint: every data message back, errors closed as in chat.
async fn echo<S: ByteStream>(mut ws: Ws<S>) {
    loop {
        match ws.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some(code) = close_code_for(&e) {
                    finish_close(&mut ws, code).await;
                }
                return;
            }
            None => return,
        }
    }
}

/// The close code for a protocol-level failure, or `None` when the peer is already gone.
fn close_code_for(e: &tungstenite::Error) -> Option<CloseCode> {
    match e {
        tungstenite::Error::Capacity(_) => Some(CloseCode::MessageTooBig),
        tungstenite::Error::Utf8(_) => Some(CloseCode::InvalidPayload),
        tungstenite::Error::Protocol(_) => Some(CloseCode::ProtocolError),
        _ => None,
    }
}

/// Sends a close frame and waits briefly for the peer's, then lets the socket drop.
async fn finish_close<S: ByteStream>(ws: &mut Ws<S>, code: CloseCode) {
    let frame = CloseFrame {
        code: code.code().into(),
        reason: code.reason().into(),
    };
    let closing = async {
        let _ = ws.close(Some(frame)).await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    by(Instant::now() + CLOSE_TIMEOUT, closing).await;
}
