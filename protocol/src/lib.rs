//! Switchboard's wire protocol, version 1, shared by the gateway and its clients.
//!
//! Everything here is plain data and pure functions (no runtime, no IO), so the gateway, the
//! load generator and the tests all speak exactly the same protocol:
//!
//! - [`ids`]: conversation, visitor and agent identifiers and their text forms.
//! - [`client`]: frames a client sends, decoded and validated by [`client::decode`].
//! - [`server`]: frames the server sends, encoded by the functions in that module.
//! - [`codes`]: error codes (in `error` frames) and WebSocket close codes.
//! - [`token`]: HMAC-signed agent and visitor tokens.
//! - [`bridge`]: the framed link between gateway shards and the storage bridge.
//! - [`hours`]: a site's business hours, parsed and checked against the clock.
//! - [`throttle`]: repeated identical warnings logged once per period, with their count.
//!
//! `docs/protocol.md` documents every frame; `docs/schema/*.json` are their JSON Schemas.

pub mod bridge;
pub mod client;
pub mod codes;
pub mod hours;
pub mod ids;
pub mod ratelimit;
pub mod server;
pub mod throttle;
#[cfg(feature = "tls")]
pub mod tls;
pub mod token;

pub use client::{decode_client_frame, ClientFrame, DecodeError};
pub use codes::{CloseCode, ErrorCode};
pub use ids::{AgentId, ConvId, ParticipantId, VisitorId};
