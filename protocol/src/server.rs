//! Frames the server sends.
//!
//! [`ServerFrame`] serialises to exactly the shapes in `docs/protocol.md`; [`encode`] turns
//! one into the bytes of a text frame once, so a message fanned out to many connections is
//! encoded a single time. Clients (tests, the load generator) deserialise the same type.

use crate::ids::{ConvId, VisitorId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Who the bot's messages are `from`: not a possible agent id (agents' ids have no `:`) nor
/// a visitor id.
pub const BOT_ID: &str = "bot:switchboard";
/// The sender of system messages (the site's systems, through the REST API): not a
/// possible agent id.
pub const SYSTEM_ID: &str = "system:switchboard";

/// A connection's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Visitor,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visitor => "visitor",
            Self::Agent => "agent",
        }
    }
}

/// Why a conversation was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Its agent closed it.
    Agent,
    /// Nobody wrote in it for the configured idle period.
    Idle,
}

/// Every frame the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame on every connection.
    Welcome {
        id: Cow<'a, str>,
        role: Role,
        /// Visitors only: present it as `&token=` to resume this identity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Cow<'a, str>>,
        client: Cow<'a, str>,
        server: Cow<'a, str>,
        protocol: u32,
        shard: u32,
        /// Seconds without any frame after which the server closes with 4000.
        idle_timeout_s: u32,
        /// Visitors of a site with a welcome text: show it before the first message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        greeting: Option<Cow<'a, str>>,
    },
    /// A chat message, delivered to every participant but its sender's connection.
    Msg {
        conv: ConvId,
        seq: u64,
        from: Cow<'a, str>,
        cid: Cow<'a, str>,
        body: Cow<'a, str>,
        ts: u64,
    },
    /// The sender's message was accepted with sequence number `seq`.
    Ack {
        cid: Cow<'a, str>,
        conv: ConvId,
        seq: u64,
    },
    /// To an agent: a conversation is now theirs, with what the AI layer noted about it, if
    /// anything: why it came to a human, its labels and its priority.
    Assigned {
        conv: ConvId,
        visitor: VisitorId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Cow<'a, str>>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<i32>,
        /// Where the visitor is, as its widget said: `page`, `referrer`, `user_agent`,
        /// `lang`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        context: BTreeMap<String, String>,
    },
    /// To the visitor who rated a conversation: the rating is kept.
    Rated { conv: ConvId, score: u8 },
    /// To every device of an agent: it is away (takes no new conversation) or online, as
    /// one of its devices said.
    Presence { status: Cow<'a, str> },
    /// To the agents of a conversation (its agent, supervisors watching it): a supervisor's
    /// note that the visitor never sees.
    Whisper {
        conv: ConvId,
        from: Cow<'a, str>,
        body: Cow<'a, str>,
    },
    /// To every participant: agent `from` handed the conversation to agent `to`, or back to
    /// the queue (no `to`). `from` is no longer in it; the transcript goes along.
    Transferred {
        conv: ConvId,
        from: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Cow<'a, str>>,
    },
    /// To a visitor: the bot answers in this conversation (its messages come `from` `bot`)
    /// until it hands over to a human (`queued`, then `agent_joined`).
    BotJoined { conv: ConvId, bot: Cow<'a, str> },
    /// To an agent: a reply the bot suggests to visitor message `seq`, that only agents see;
    /// `by` is the plugin that wrote it.
    Draft {
        conv: ConvId,
        seq: u64,
        body: Cow<'a, str>,
        by: Cow<'a, str>,
    },
    /// To an agent: what the AI layer noted about a conversation of theirs since.
    Labels {
        conv: ConvId,
        labels: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Cow<'a, str>>,
    },
    /// To a visitor: no agent is free; `position` 1 is next. `offline`: no agent is online at
    /// all, so the visitor is leaving a message (stored, answered when one comes), and
    /// `offline_text` says so in the site's words.
    Queued {
        conv: ConvId,
        position: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        offline: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offline_text: Option<Cow<'a, str>>,
    },
    /// To a visitor: an agent has joined the conversation.
    AgentJoined { conv: ConvId, agent: Cow<'a, str> },
    /// The conversation was closed: by its agent `by`, or by the gateway after nobody wrote
    /// in it for `conversation_idle_close_s` (no `by`).
    Closed {
        conv: ConvId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Cow<'a, str>>,
        reason: CloseReason,
    },
    /// `from` is typing.
    Typing { conv: ConvId, from: Cow<'a, str> },
    /// `from` has read up to `seq`.
    Read {
        conv: ConvId,
        from: Cow<'a, str>,
        seq: u64,
    },
    /// Answer to `resume`: every message after the client's `last_seq` has been sent (or, when
    /// `complete` is false, the oldest ones were no longer in the recent window).
    Resumed {
        conv: ConvId,
        last_seq: u64,
        replayed: u32,
        complete: bool,
    },
    /// Answer to `history`: messages oldest first; `complete` is false when older ones exist.
    History {
        conv: ConvId,
        messages: Vec<HistoryItem<'a>>,
        complete: bool,
    },
    /// The client's frame was refused; the connection stays open.
    Error {
        code: Cow<'a, str>,
        message: Cow<'a, str>,
        cid: Option<Cow<'a, str>>,
    },
}

/// One message in a `history` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem<'a> {
    pub seq: u64,
    pub from: Cow<'a, str>,
    pub cid: Cow<'a, str>,
    pub body: Cow<'a, str>,
    pub ts: u64,
}

/// Encodes a frame as the payload of a WebSocket text message.
///
/// simd-json's serializer, because `bench/benches/frames.rs` measured it 1.8x faster than
/// serde_json's on a 200-byte `msg` frame (149 ns against 275 ns); both write the same JSON
/// (a property test compares them).
pub fn encode(frame: &ServerFrame<'_>) -> Bytes {
    Bytes::from(simd_json::to_vec(frame).expect("server frames always serialise"))
}

/// Parses a server frame (for clients and tests).
pub fn decode_server_frame(text: &str) -> Result<ServerFrame<'static>, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_has_exactly_the_documented_shape() {
        let bytes = encode(&ServerFrame::Msg {
            conv: ConvId(1),
            seq: 3,
            from: "v00000000000000ff".into(),
            cid: "a\"b".into(),
            body: "hi \u{1F600}".into(),
            ts: 1_700_000_000_000,
        });
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"msg","conv":"c0000000000000001","seq":3,
                "from":"v00000000000000ff","cid":"a\"b","body":"hi \u{1F600}","ts":1_700_000_000_000u64})
        );
        let back = decode_server_frame(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert!(matches!(back, ServerFrame::Msg { seq: 3, .. }));
    }

    proptest::proptest! {
        /// simd-json's serializer writes what serde_json would, for any text in any field
        /// (control characters, quotes, backslashes, non-ASCII). The third kind of body
        /// mixes them with plain text at any offset: the escaper works in 16-byte blocks,
        /// with SSE/AVX on x86_64 and NEON on aarch64 (scripts/aarch64.sh runs this there).
        #[test]
        fn simd_encoding_reads_back_as_serde_json_would(
            body in "\\PC*|[\\x00-\\x1f\"\\\\/]*|[ -~\\x00-\\x1f\u{e9}\u{4e2d}\u{1F600}]{0,100}",
            cid in ".{0,64}",
            seq: u64,
            ts: u64,
        ) {
            let frame = ServerFrame::Msg {
                conv: ConvId(seq.rotate_left(7)),
                seq,
                from: "ann".into(),
                cid: cid.as_str().into(),
                body: body.as_str().into(),
                ts,
            };
            let ours: serde_json::Value = serde_json::from_slice(&encode(&frame)).unwrap();
            let theirs: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&frame).unwrap()).unwrap();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn error_frame_always_has_a_cid_key() {
        let bytes = encode(&ServerFrame::Error {
            code: "bad_json".into(),
            message: "x".into(),
            cid: None,
        });
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"type":"error","code":"bad_json","message":"x","cid":null}"#
        );
    }
}
