//! A plain HTTP/1.1 GET or POST over a fresh TCP connection, read to its end: enough for
//! health, metrics and the REST API, and no client library between the test and the server.

use crate::wait::TIMEOUT;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A whole response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The status line and headers, without the blank line.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` on `addr` (`host:port`) with `headers` and `Connection: close`. Panics when
/// the server cannot be reached or answers something that is not HTTP.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", addr, path, headers, None)
}

/// `POST path` on `addr` with a JSON `body`, `headers` and `Connection: close`.
pub fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    request("POST", addr, path, headers, Some(body))
}

/// Any `method` on `addr`, with `headers` and a JSON `body` if given.
pub fn request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).expect("a timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    s.write_all(req.as_bytes()).expect("request sent");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"));
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {addr}{path}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

/// The hex HMAC-SHA256 of `body` under `secret`: how webhooks are signed, and how a site's
/// back end signs its customers' ids.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_split_into_status_head_and_body() {
        let r =
            parse(b"HTTP/1.1 404 Not Found\r\nContent-Encoding: zstd\r\n\r\nnope\r\n\r\n").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-encoding"), Some("zstd"));
        assert_eq!(r.text(), "nope\r\n\r\n");
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), None, "no end of head");
    }

    #[test]
    fn get_sends_the_headers_and_reads_to_the_end() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).unwrap();
                req.push(b[0]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nok\n").unwrap();
            String::from_utf8(req).unwrap()
        });
        let r = get(&addr, "/healthz", &[("Authorization", "Bearer t")]);
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Authorization: Bearer t\r\n"), "{req}");
    }
}
