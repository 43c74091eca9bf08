//! Loopback ports: one nothing listens on yet, and waiting until something does.

use crate::wait;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A loopback port nothing listens on now (the kernel's pick, outside any fixed range).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("bound")
        .port()
}

/// `127.0.0.1:PORT` for a [`free_port`], for flags that take an address.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Waits until a TCP connection to `addr` succeeds; panics after `limit`.
///
/// A port from [`free_port`] lies in the ephemeral range, so a connect to it while nothing
/// listens can, once in tens of thousands of tries, be given that same port as its source and
/// connect to itself (TCP simultaneous open). Such a connection is not a listener and counts
/// as refused.
pub fn wait_listening(addr: &str, limit: Duration) {
    let _connected = wait::eventually(
        &format!("something listening on {addr}"),
        limit,
        || connect_to_other(addr),
        Result::is_ok,
    );
}

fn connect_to_other(addr: &str) -> Result<(), std::io::ErrorKind> {
    let stream = TcpStream::connect(addr).map_err(|e| e.kind())?;
    let (local, peer) = (stream.local_addr(), stream.peer_addr());
    match (local, peer) {
        (Ok(local), Ok(peer)) if local == peer => Err(std::io::ErrorKind::ConnectionRefused),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound_and_waited_for() {
        let addr = free_addr();
        let listener = TcpListener::bind(&addr).expect("the port was free");
        wait_listening(&addr, wait::TIMEOUT);
        drop(listener);
    }

    #[test]
    #[should_panic(expected = "last seen: Err(ConnectionRefused)")]
    fn waiting_for_a_port_nobody_opens_fails_at_the_deadline() {
        // Held bound but not listening, so no other process can take the port meanwhile.
        let held = tokio::net::TcpSocket::new_v4().expect("a socket");
        held.bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bound");
        let addr = held.local_addr().expect("its address").to_string();
        wait_listening(&addr, Duration::from_millis(100));
    }
}
