//! The HTTP/1.1 side of a connection, sans-IO: parse the request head, decide what it is
//! (an upgrade, `/healthz`, `/metrics`, or an error), and build the responses.
//!
//! Parsing separates "need more bytes" from "invalid", so the caller reads until the head
//! is complete or the header size cap is hit.

use tungstenite::handshake::derive_accept_key;

/// Result of parsing what has been read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A complete head of `len` bytes; anything after it belongs to the WebSocket.
    Complete { request: Request, len: usize },
}

/// The parts of a request head the gateway uses.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub upgrade_websocket: bool,
    pub connection_upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    pub origin: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed HTTP request: {0}")]
pub struct BadRequest(pub String);

const MAX_HEADERS: usize = 48;

pub fn parse_head(buf: &[u8]) -> Result<Parsed, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Err(BadRequest(e.to_string())),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        if h.name.eq_ignore_ascii_case("upgrade") {
            request.upgrade_websocket = value.eq_ignore_ascii_case("websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            request.connection_upgrade = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            request.ws_key = Some(value);
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            request.ws_version = Some(value);
        } else if h.name.eq_ignore_ascii_case("origin") {
            request.origin = Some(value);
        }
    }
    Ok(Parsed::Complete { request, len })
}

/// What to do with a complete request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Metrics,
    /// A static file (the widget, the demo page).
    Asset(&'static crate::assets::Asset),
    /// A WebSocket upgrade to `path`; the caller authenticates it.
    Upgrade {
        path: &'a str,
        query: &'a str,
        key: &'a str,
    },
    /// A WebSocket upgrade to the test-only echo endpoint.
    Echo {
        key: &'a str,
    },
    /// Answer with this status and message, then close.
    Reject {
        status: u16,
        message: &'static str,
    },
}

/// Decides what a request is. `allowed_origins` empty means any origin; `echo_path` is the
/// test-only echo endpoint, if configured.
pub fn route<'a>(
    req: &'a Request,
    allowed_origins: &[String],
    echo_path: Option<&str>,
) -> Route<'a> {
    let echo = echo_path.is_some_and(|p| p == req.path);
    match req.path.as_str() {
        "/healthz" | "/metrics" if req.method != "GET" => Route::Reject {
            status: 405,
            message: "method not allowed",
        },
        "/healthz" => Route::Health,
        "/metrics" => Route::Metrics,
        path if !echo && req.method == "GET" && crate::assets::find(path).is_some() => {
            Route::Asset(crate::assets::find(path).expect("found above"))
        }
        _ if echo || req.path == "/ws/visitor" || req.path == "/ws/agent" => {
            if req.method != "GET" {
                return Route::Reject {
                    status: 405,
                    message: "method not allowed",
                };
            }
            if !req.upgrade_websocket || !req.connection_upgrade {
                return Route::Reject {
                    status: 426,
                    message: "this endpoint only speaks WebSocket",
                };
            }
            if req.ws_version.as_deref() != Some("13") {
                return Route::Reject {
                    status: 426,
                    message: "unsupported WebSocket version (13 required)",
                };
            }
            let Some(key) = req.ws_key.as_deref().filter(|k| k.len() == 24) else {
                return Route::Reject {
                    status: 400,
                    message: "missing or malformed Sec-WebSocket-Key",
                };
            };
            // Browsers always send Origin, so the allowlist stops cross-site pages from
            // opening sockets with a visitor's cookies or tokens. Apps and bots send none and
            // authenticate with their tokens like everyone else; refusing them would protect
            // nothing (any non-browser client can write any Origin).
            if let (false, Some(origin)) = (allowed_origins.is_empty(), req.origin.as_ref()) {
                if !allowed_origins.iter().any(|a| a == origin) {
                    return Route::Reject {
                        status: 403,
                        message: "origin not allowed",
                    };
                }
            }
            if echo {
                return Route::Echo { key };
            }
            Route::Upgrade {
                path: &req.path,
                query: &req.query,
                key,
            }
        }
        _ => Route::Reject {
            status: 404,
            message: "not found",
        },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete response that closes the connection.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if status == 426 {
        out.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A plain-text error response.
pub fn error_response(status: u16, message: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").as_bytes(),
    )
}

/// The 101 answer to a valid upgrade.
pub fn switching_protocols(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /ws/agent?token=abc&client=web HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://shop.example\r\n\r\n";

    fn complete(text: &str) -> (Request, usize) {
        match parse_head(text.as_bytes()).unwrap() {
            Parsed::Complete { request, len } => (request, len),
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn parses_an_upgrade_byte_by_byte() {
        let bytes = UPGRADE.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_head(&bytes[..cut]).unwrap(),
                Parsed::Partial,
                "cut at {cut}"
            );
        }
        let (req, len) = complete(&format!("{UPGRADE}\u{81}\u{80}"));
        assert_eq!(len, bytes.len());
        assert_eq!(
            (req.path.as_str(), req.query.as_str()),
            ("/ws/agent", "token=abc&client=web")
        );
        assert!(req.upgrade_websocket && req.connection_upgrade);
        assert_eq!(
            route(&req, &[], None),
            Route::Upgrade {
                path: "/ws/agent",
                query: "token=abc&client=web",
                key: "dGhlIHNhbXBsZSBub25jZQ=="
            }
        );
    }

    #[test]
    fn routes_and_rejections() {
        let (req, _) = complete("GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(route(&req, &[], None), Route::Health);
        let (req, _) = complete("GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(route(&req, &[], None), Route::Metrics);
        let (req, _) = complete("POST /healthz HTTP/1.1\r\n\r\n");
        assert!(matches!(
            route(&req, &[], None),
            Route::Reject { status: 405, .. }
        ));
        let (req, _) = complete("GET /nope HTTP/1.1\r\n\r\n");
        assert!(matches!(
            route(&req, &[], None),
            Route::Reject { status: 404, .. }
        ));
        let (req, _) = complete("GET /ws/visitor HTTP/1.1\r\n\r\n");
        assert!(matches!(
            route(&req, &[], None),
            Route::Reject { status: 426, .. }
        ));
        let (req, _) = complete(&UPGRADE.replace("Version: 13", "Version: 8"));
        assert!(matches!(
            route(&req, &[], None),
            Route::Reject { status: 426, .. }
        ));
        let (req, _) = complete(&UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"));
        assert!(matches!(
            route(&req, &[], None),
            Route::Reject { status: 400, .. }
        ));
        let (req, _) = complete(UPGRADE);
        assert!(matches!(
            route(&req, &["https://other.example".into()], None),
            Route::Reject { status: 403, .. }
        ));
        assert!(matches!(
            route(&req, &["https://shop.example".into()], None),
            Route::Upgrade { .. }
        ));
        // No Origin: not a browser (an app or a bot); its token decides.
        let (req, _) = complete(&UPGRADE.replace("Origin: https://shop.example\r\n", ""));
        assert!(req.origin.is_none());
        assert!(matches!(
            route(&req, &["https://shop.example".into()], None),
            Route::Upgrade { .. }
        ));
        assert!(parse_head(b"\x00\x01garbage\r\n\r\n").is_err());
        let (req, _) = complete(&UPGRADE.replace("/ws/agent?token=abc&client=web", "/"));
        assert!(matches!(route(&req, &[], Some("/")), Route::Echo { .. }));
        // Without the echo endpoint, `/` is the demo page; other paths are not found.
        assert!(matches!(route(&req, &[], None), Route::Asset(a) if a.path == "/"));
        let (req, _) = complete(&UPGRADE.replace("/ws/agent?token=abc&client=web", "/nothing"));
        assert!(matches!(
            route(&req, &[], None),
            Route::Reject { status: 404, .. }
        ));
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        let r = String::from_utf8(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(
            r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\n"));
    }
}
