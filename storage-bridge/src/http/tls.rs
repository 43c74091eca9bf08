//! The HTTP API over TLS (`--tls-cert`, `--tls-key`): rustls on each accepted connection,
//! then hyper serving the same axum router as plain HTTP. The certificate is reloaded on
//! SIGHUP (see [`switchboard_protocol::tls::TlsSource`]): each accept takes the newest,
//! open connections keep theirs. A connection that does not start
//! with a TLS handshake (plain HTTP on this port) gets a plain-text 400 and is closed.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::tls::{TlsSource, HANDSHAKE_RECORD};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Time allowed for the first byte and the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

const PLAIN_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 48\r\nconnection: close\r\n\r\nthis port speaks TLS: use https:// to reach it\r\n";

/// Serves `app` over TLS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: Router, tls: Arc<TlsSource>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: back off rather than spin.
                tracing::warn!(error = %e, "HTTPS accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(tls.current());
        tokio::spawn(connection(tcp, peer, acceptor, app.clone()));
    }
}

async fn connection(
    mut tcp: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
) {
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            let _ = tcp.write_all(PLAIN_REFUSAL).await;
            let _ = tcp.shutdown().await;
            return;
        }
        _ => return,
    }
    let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await else {
        return;
    };
    // The caller's address, as plain HTTP's `ConnectInfo` gives it, for the API's limits.
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plain_refusal_is_a_well_formed_response() {
        let text = std::str::from_utf8(super::PLAIN_REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
