//! The link between gateway shards and the storage bridge, over a Unix socket.
//!
//! Each frame is a 4-byte big-endian length followed by that many bytes of JSON (one
//! [`BridgeMsg`]). The first frame each way is the handshake: the gateway sends `hello` with
//! its protocol version, the bridge answers `welcome` or `refuse` (and closes). Requests
//! carry a `req` id the answer repeats, so a shard can pipeline them.
//!
//! Sans-IO: [`encode`] appends a frame to a buffer, [`decode`] takes one complete frame off
//! the front of a buffer, telling "need more bytes" apart from "invalid".

use crate::ids::{ConvId, VisitorId};
use serde::{Deserialize, Serialize};

/// Version of this link protocol; both sides must agree exactly.
pub const BRIDGE_PROTOCOL_VERSION: u32 = 1;
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub conv: ConvId,
    pub seq: u64,
    /// Visitor id or agent id, as in `from`.
    pub sender: String,
    pub cid: String,
    pub body: String,
    /// Unix milliseconds.
    pub ts: u64,
}

/// A conversation's lifecycle facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConvEvent {
    Opened {
        conv: ConvId,
        visitor: VisitorId,
        ts: u64,
    },
    Assigned {
        conv: ConvId,
        agent: String,
        ts: u64,
    },
    Closed {
        conv: ConvId,
        by: String,
        ts: u64,
    },
}

/// An open conversation and its agent, if assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenConv {
    pub conv: ConvId,
    pub visitor: VisitorId,
    pub agent: Option<String>,
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvInfo {
    pub visitor: VisitorId,
    pub agent: Option<String>,
    pub closed: bool,
    /// The newest stored seq (0 when no message is stored).
    pub last_seq: u64,
    /// The newest messages, oldest first.
    pub recent: Vec<StoredMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BridgeMsg {
    // ---- handshake ----
    Hello {
        version: u32,
        shard: u32,
    },
    Welcome {
        version: u32,
    },
    Refuse {
        reason: String,
    },

    // ---- gateway -> bridge ----
    /// Store these messages and events; answered by `persisted` once committed.
    Persist {
        req: u64,
        messages: Vec<StoredMessage>,
        events: Vec<ConvEvent>,
    },
    /// What the store knows of a conversation, with its `recent` newest messages (to rebuild
    /// the resume window and the dedupe memory after a gateway restart).
    LoadConv {
        req: u64,
        conv: ConvId,
        recent: u32,
    },
    /// Conversations not closed (at most `limit`), for the dispatcher after a restart.
    OpenConvs {
        req: u64,
        limit: u32,
    },
    /// Messages with `after < seq < before`, oldest first, at most `limit`, taking the newest
    /// when more match.
    History {
        req: u64,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
    },

    // ---- bridge -> gateway ----
    Persisted {
        req: u64,
    },
    /// The request failed; the gateway retries `persist` later.
    Failed {
        req: u64,
        reason: String,
    },
    /// `info` is `None` for a conversation the store has never seen.
    ConvLoaded {
        req: u64,
        conv: ConvId,
        info: Option<ConvInfo>,
    },
    HistoryIs {
        req: u64,
        conv: ConvId,
        messages: Vec<StoredMessage>,
    },
    OpenConvsAre {
        req: u64,
        convs: Vec<OpenConv>,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Appends `msg` as one frame.
pub fn encode(msg: &BridgeMsg, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, msg).expect("bridge messages serialise");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Takes one frame off the front of `buf`: `Ok(None)` when it is not complete yet.
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<BridgeMsg>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let msg =
        serde_json::from_slice(&buf[4..4 + len]).map_err(|e| CodecError::Malformed(e.to_string()));
    buf.drain(..4 + len);
    msg.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BridgeMsg {
        BridgeMsg::Persist {
            req: 7,
            messages: vec![StoredMessage {
                conv: ConvId(1),
                seq: 2,
                sender: "v0000000000000001".into(),
                cid: "c\"1".into(),
                body: "héllo\n".into(),
                ts: 3,
            }],
            events: vec![ConvEvent::Opened {
                conv: ConvId(1),
                visitor: VisitorId(1),
                ts: 3,
            }],
        }
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        encode(&sample(), &mut wire);
        encode(&BridgeMsg::Persisted { req: 7 }, &mut wire);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(m) = decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![sample(), BridgeMsg::Persisted { req: 7 }]);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut buf = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        assert_eq!(decode(&mut buf), Err(CodecError::TooLarge(MAX_FRAME + 1)));
        let mut buf = vec![0, 0, 0, 3, b'{', b'x', b'}'];
        assert!(matches!(decode(&mut buf), Err(CodecError::Malformed(_))));
        assert!(buf.is_empty(), "the bad frame is consumed");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = bytes;
            let _ = decode(&mut buf);
        }
    }
}
