//! The gateway's TLS listener: each shard's view of the [`TlsSource`] (the certificate,
//! loaded at start and again on SIGHUP by the signal thread).

use std::sync::Arc;
pub use switchboard_protocol::tls::{TlsError, TlsSource, HANDSHAKE_RECORD};

/// A shard's view of a [`TlsSource`]: the configuration it took last, and which.
pub struct ShardTls {
    source: Arc<TlsSource>,
    taken: std::cell::RefCell<(u64, futures_rustls::TlsAcceptor)>,
}

impl ShardTls {
    pub fn new(source: Arc<TlsSource>) -> Self {
        let taken = (source.generation(), source.current().into());
        Self {
            source,
            taken: std::cell::RefCell::new(taken),
        }
    }

    /// The acceptor for a new connection: the newest configuration.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        let now = self.source.generation();
        let mut taken = self.taken.borrow_mut();
        if taken.0 != now {
            *taken = (now, self.source.current().into());
        }
        taken.1.clone()
    }
}
