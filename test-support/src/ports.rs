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
pub fn wait_listening(addr: &str, limit: Duration) {
    let _connected = wait::eventually(
        &format!("something listening on {addr}"),
        limit,
        || TcpStream::connect(addr).map(drop).map_err(|e| e.kind()),
        Result::is_ok,
    );
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
        wait_listening(&free_addr(), Duration::from_millis(100));
    }
}
