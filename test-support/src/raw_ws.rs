//! A raw TCP client for what a well-behaved WebSocket library will not send: a hand-made
//! upgrade (any head, any header), arbitrary frames (unmasked, invalid UTF-8, oversized),
//! and a client that never reads. Blocking, with the [`TIMEOUT`] read deadline.

use crate::wait::TIMEOUT;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connected");
        s.set_read_timeout(Some(TIMEOUT)).expect("a timeout");
        Raw { s }
    }

    /// Sends a request head and returns the response head.
    pub fn request(&mut self, head: &str) -> String {
        self.s.write_all(head.as_bytes()).expect("sent");
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

    /// Connected and upgraded to WebSocket on `path`.
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
        self.s.write_all(&f).expect("sent");
    }

    /// Reads server frames until a close frame (returns its code) or EOF (None).
    pub fn read_until_close(&mut self) -> Option<u16> {
        let mut buf = Vec::new();
        let _ = self.s.read_to_end(&mut buf);
        close_code(&buf)
    }
}

/// The code of the first close frame in `buf` (unmasked server frames), if any.
fn close_code(buf: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i + 2 <= buf.len() {
        let opcode = buf[i] & 0x0f;
        let mut len = (buf[i + 1] & 0x7f) as usize;
        let mut p = i + 2;
        if len == 126 {
            len = u16::from_be_bytes([buf[p], buf[p + 1]]) as usize;
            p += 2;
        } else if len == 127 {
            len = u64::from_be_bytes(buf[p..p + 8].try_into().expect("8 bytes")) as usize;
            p += 8;
        }
        if opcode == 8 && len >= 2 && p + 2 <= buf.len() {
            return Some(u16::from_be_bytes([buf[p], buf[p + 1]]));
        }
        i = p + len;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_close_code_is_found_after_other_frames() {
        let mut buf = vec![0x81, 2, b'h', b'i'];
        buf.extend([0x82, 126, 0, 200]);
        buf.extend([0u8; 200]);
        buf.extend([0x88, 2, 0x0f, 0xa0]);
        assert_eq!(super::close_code(&buf), Some(4000));
        assert_eq!(super::close_code(&buf[..4]), None);
    }
}
