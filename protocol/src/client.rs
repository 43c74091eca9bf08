//! Frames a client sends, and their decoder.
//!
//! Decoding is two steps: a loose pass that accepts any JSON value in any field (so a wrong
//! type is reported as `invalid_field`, not as broken JSON), then validation into a typed
//! [`ClientFrame`]. Unknown fields are ignored so that newer clients work with older servers.

use crate::codes::ErrorCode;
use crate::ids::{AgentId, ConvId};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Longest accepted client message id, in bytes.
pub const MAX_CID_LEN: usize = 64;
/// Longest transfer note, in bytes.
pub const MAX_NOTE_LEN: usize = 1000;
/// The longest value of a `context` field, in bytes.
pub const MAX_CONTEXT_LEN: usize = 512;

/// A validated client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A chat message. Visitors may omit `conv` (their current conversation is used, and
    /// the first message opens one); agents must name it.
    Msg {
        cid: String,
        body: String,
        conv: Option<ConvId>,
    },
    /// The sender is typing.
    Typing { conv: Option<ConvId> },
    /// The sender has read everything up to `seq`.
    Read { conv: Option<ConvId>, seq: u64 },
    /// Re-attach this connection to a conversation and receive every message after `last_seq`.
    Resume { conv: ConvId, last_seq: u64 },
    /// Close a conversation (agents only).
    Close { conv: ConvId },
    /// Supervisors: a note to the conversation's agent that the visitor never sees.
    Whisper { conv: ConvId, body: String },
    /// Hand a conversation to another agent (`to`), or back to the queue (none), with a
    /// note for whoever takes it (its agent only).
    Transfer {
        conv: ConvId,
        to: Option<AgentId>,
        /// To a team's queue instead: its agents with room, or it waits for one.
        team: Option<String>,
        note: Option<String>,
    },
    /// Visitors: how satisfied they were with a closed conversation (the one `closed`
    /// named), 1 to 5, with an optional comment. A second rating replaces the first.
    Rate {
        conv: ConvId,
        score: u8,
        comment: Option<String>,
    },
    /// Visitors: where they are, for the agent who takes their conversation. Sent at
    /// connect (and again when it changes); each field at most [`MAX_CONTEXT_LEN`] bytes.
    /// `name` and `email` are what the visitor typed (the widget's offline form), unverified.
    Context {
        page: Option<String>,
        referrer: Option<String>,
        user_agent: Option<String>,
        lang: Option<String>,
        name: Option<String>,
        email: Option<String>,
    },
    /// Agents: away (no new conversation comes to it; it keeps those it has) or back.
    Presence { away: bool },
    /// Up to `limit` messages before `before` (all newest when absent), oldest first.
    History {
        conv: Option<ConvId>,
        before: Option<u64>,
        limit: Option<u64>,
    },
}

/// Why a frame was refused; becomes an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    /// The frame's `cid` when it had a readable one, so the client can match the error.
    pub cid: Option<String>,
}

/// Any JSON value, classified just enough to validate a field.
enum Loose<'a> {
    Str(Cow<'a, str>),
    UInt(u64),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Loose<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Loose::UInt(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(Loose::Other, Loose::UInt))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The first, loose pass: every known field, any JSON value in it.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<Loose<'a>>,
    #[serde(borrow, default)]
    cid: Option<Loose<'a>>,
    #[serde(borrow, default)]
    body: Option<Loose<'a>>,
    #[serde(borrow, default)]
    conv: Option<Loose<'a>>,
    #[serde(borrow, default)]
    seq: Option<Loose<'a>>,
    #[serde(borrow, default)]
    last_seq: Option<Loose<'a>>,
    #[serde(borrow, default)]
    before: Option<Loose<'a>>,
    #[serde(borrow, default)]
    limit: Option<Loose<'a>>,
    #[serde(borrow, default)]
    to: Option<Loose<'a>>,
    #[serde(borrow, default)]
    note: Option<Loose<'a>>,
    #[serde(borrow, default)]
    team: Option<Loose<'a>>,
    #[serde(borrow, default)]
    score: Option<Loose<'a>>,
    #[serde(borrow, default)]
    comment: Option<Loose<'a>>,
    #[serde(borrow, default)]
    page: Option<Loose<'a>>,
    #[serde(borrow, default)]
    referrer: Option<Loose<'a>>,
    #[serde(borrow, default)]
    user_agent: Option<Loose<'a>>,
    #[serde(borrow, default)]
    lang: Option<Loose<'a>>,
    #[serde(borrow, default)]
    name: Option<Loose<'a>>,
    #[serde(borrow, default)]
    email: Option<Loose<'a>>,
    #[serde(borrow, default)]
    status: Option<Loose<'a>>,
}

/// Decodes one text frame with serde_json.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, DecodeError> {
    // serde would also read a struct from a JSON array; the protocol only has objects.
    if !text.trim_start().starts_with('{') {
        return Err(bad_json("a frame must be a JSON object".into()));
    }
    let raw: RawFrame<'_> =
        serde_json::from_str(text).map_err(|e| bad_json(format!("not a JSON object: {e}")))?;
    validate(raw)
}

/// Decodes one text frame with simd-json (which parses in place, so it takes a mutable
/// copy of the frame). Same validation and the same result as [`decode_client_frame`].
#[cfg(feature = "simd")]
pub fn decode_client_frame_simd(text: &mut [u8]) -> Result<ClientFrame, DecodeError> {
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad_json("a frame must be a JSON object".into()));
    }
    let raw: RawFrame<'_> = simd_json::serde::from_slice(text)
        .map_err(|e| bad_json(format!("not a JSON object: {e}")))?;
    validate(raw)
}

fn bad_json(message: String) -> DecodeError {
    DecodeError {
        code: ErrorCode::BadJson,
        message,
        cid: None,
    }
}

fn validate(raw: RawFrame<'_>) -> Result<ClientFrame, DecodeError> {
    // The cid is read first so that every later error can carry it.
    let cid = match &raw.cid {
        Some(Loose::Str(s)) if !s.is_empty() && s.len() <= MAX_CID_LEN => Some(s.as_ref()),
        _ => None,
    };
    let fail = |code: ErrorCode, message: String| DecodeError {
        code,
        message,
        cid: cid.map(str::to_owned),
    };
    let ty = match &raw.ty {
        Some(Loose::Str(s)) => s.as_ref(),
        Some(_) => {
            return Err(fail(
                ErrorCode::UnknownType,
                "`type` must be a string".into(),
            ))
        }
        None => return Err(fail(ErrorCode::UnknownType, "frame has no `type`".into())),
    };
    let conv = |required: bool| -> Result<Option<ConvId>, DecodeError> {
        match &raw.conv {
            None if required => Err(fail(
                ErrorCode::MissingField,
                format!("`{ty}` needs `conv`"),
            )),
            None => Ok(None),
            Some(Loose::Str(s)) => ConvId::parse(s).map(Some).ok_or_else(|| {
                fail(
                    ErrorCode::InvalidField,
                    "`conv` is not a conversation id".into(),
                )
            }),
            Some(_) => Err(fail(
                ErrorCode::InvalidField,
                "`conv` must be a string".into(),
            )),
        }
    };
    let uint = |field: &Option<Loose<'_>>, name: &str| -> Result<u64, DecodeError> {
        match field {
            None => Err(fail(
                ErrorCode::MissingField,
                format!("`{ty}` needs `{name}`"),
            )),
            Some(Loose::UInt(n)) => Ok(*n),
            Some(_) => Err(fail(
                ErrorCode::InvalidField,
                format!("`{name}` must be a non-negative integer"),
            )),
        }
    };
    match ty {
        "msg" => {
            let cid = match &raw.cid {
                None => return Err(fail(ErrorCode::MissingField, "`msg` needs `cid`".into())),
                Some(Loose::Str(s)) if !s.is_empty() && s.len() <= MAX_CID_LEN => s.to_string(),
                Some(_) => {
                    return Err(fail(
                        ErrorCode::InvalidField,
                        format!("`cid` must be a string of 1 to {MAX_CID_LEN} bytes"),
                    ))
                }
            };
            let body = match raw.body {
                None => return Err(fail(ErrorCode::MissingField, "`msg` needs `body`".into())),
                Some(Loose::Str(s)) if !s.is_empty() => s.into_owned(),
                Some(_) => {
                    return Err(fail(
                        ErrorCode::InvalidField,
                        "`body` must be a non-empty string".into(),
                    ))
                }
            };
            Ok(ClientFrame::Msg {
                cid,
                body,
                conv: conv(false)?,
            })
        }
        "typing" => Ok(ClientFrame::Typing { conv: conv(false)? }),
        "read" => Ok(ClientFrame::Read {
            conv: conv(false)?,
            seq: uint(&raw.seq, "seq")?,
        }),
        "resume" => Ok(ClientFrame::Resume {
            conv: conv(true)?.expect("required"),
            last_seq: uint(&raw.last_seq, "last_seq")?,
        }),
        "history" => {
            let optional = |field: &Option<Loose<'_>>, name: &str| match field {
                None => Ok(None),
                Some(_) => uint(field, name).map(Some),
            };
            Ok(ClientFrame::History {
                conv: conv(false)?,
                before: optional(&raw.before, "before")?,
                limit: optional(&raw.limit, "limit")?,
            })
        }
        "close" => Ok(ClientFrame::Close {
            conv: conv(true)?.expect("required"),
        }),
        "whisper" => {
            let body = match raw.body {
                Some(Loose::Str(s)) if !s.is_empty() => s.into_owned(),
                None => {
                    return Err(fail(
                        ErrorCode::MissingField,
                        "`whisper` needs `body`".into(),
                    ))
                }
                Some(_) => {
                    return Err(fail(
                        ErrorCode::InvalidField,
                        "`body` must be a non-empty string".into(),
                    ))
                }
            };
            Ok(ClientFrame::Whisper {
                conv: conv(true)?.expect("required"),
                body,
            })
        }
        "presence" => match raw.status {
            Some(Loose::Str(s)) if s == "away" => Ok(ClientFrame::Presence { away: true }),
            Some(Loose::Str(s)) if s == "online" => Ok(ClientFrame::Presence { away: false }),
            None => Err(fail(
                ErrorCode::MissingField,
                "`presence` needs `status`".into(),
            )),
            Some(_) => Err(fail(
                ErrorCode::InvalidField,
                "`status` must be \"away\" or \"online\"".into(),
            )),
        },
        "transfer" => {
            let to = match &raw.to {
                None => None,
                Some(Loose::Str(s)) => Some(AgentId::new(s).ok_or_else(|| {
                    fail(ErrorCode::InvalidField, "`to` is not an agent id".into())
                })?),
                Some(_) => {
                    return Err(fail(
                        ErrorCode::InvalidField,
                        "`to` must be a string".into(),
                    ))
                }
            };
            let note = match &raw.note {
                None => None,
                Some(Loose::Str(s)) if s.len() <= MAX_NOTE_LEN => Some(s.to_string()),
                Some(_) => {
                    return Err(fail(
                        ErrorCode::InvalidField,
                        format!("`note` must be a string of at most {MAX_NOTE_LEN} bytes"),
                    ))
                }
            };
            let team = match &raw.team {
                None => None,
                Some(Loose::Str(s)) if crate::token::is_team(s) => Some(s.to_string()),
                Some(_) => {
                    return Err(fail(
                        ErrorCode::InvalidField,
                        "`team` must be 1-32 of a-z 0-9 _ -".into(),
                    ))
                }
            };
            if to.is_some() && team.is_some() {
                return Err(fail(
                    ErrorCode::InvalidField,
                    "`to` or `team`, not both".into(),
                ));
            }
            Ok(ClientFrame::Transfer {
                conv: conv(true)?.expect("required"),
                to,
                team,
                note,
            })
        }
        "rate" => {
            let score = uint(&raw.score, "score")?;
            if !(1..=5).contains(&score) {
                return Err(fail(
                    ErrorCode::InvalidField,
                    "`score` must be 1 to 5".into(),
                ));
            }
            let comment = text_field(&raw.comment, "comment", MAX_NOTE_LEN)
                .map_err(|m| fail(ErrorCode::InvalidField, m))?;
            Ok(ClientFrame::Rate {
                conv: conv(true)?.expect("required"),
                score: score as u8,
                comment,
            })
        }
        "context" => {
            let field = |f: &Option<Loose<'_>>, name: &str| {
                text_field(f, name, MAX_CONTEXT_LEN).map_err(|m| fail(ErrorCode::InvalidField, m))
            };
            Ok(ClientFrame::Context {
                page: field(&raw.page, "page")?,
                referrer: field(&raw.referrer, "referrer")?,
                user_agent: field(&raw.user_agent, "user_agent")?,
                lang: field(&raw.lang, "lang")?,
                name: field(&raw.name, "name")?,
                email: field(&raw.email, "email")?,
            })
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            Err(fail(
                ErrorCode::UnknownType,
                format!("unknown frame type `{shown}`"),
            ))
        }
    }
}

/// An optional text field of at most `max` bytes (empty: absent).
fn text_field(f: &Option<Loose<'_>>, name: &str, max: usize) -> Result<Option<String>, String> {
    match f {
        None => Ok(None),
        Some(Loose::Str(s)) if s.is_empty() => Ok(None),
        Some(Loose::Str(s)) if s.len() <= max => Ok(Some(s.to_string())),
        Some(_) => Err(format!("`{name}` must be a string of at most {max} bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ratings_and_context() {
        let c = ConvId(0xab);
        assert_eq!(
            decode_client_frame(
                r#"{"type":"rate","conv":"c00000000000000ab","score":4,"comment":"quick"}"#
            )
            .unwrap(),
            ClientFrame::Rate {
                conv: c,
                score: 4,
                comment: Some("quick".into())
            }
        );
        for bad in [0, 6] {
            assert_eq!(
                code(&format!(
                    r#"{{"type":"rate","conv":"c00000000000000ab","score":{bad}}}"#
                )),
                ErrorCode::InvalidField
            );
        }
        assert_eq!(
            code(r#"{"type":"rate","score":1}"#),
            ErrorCode::MissingField
        );
        assert_eq!(
            code(r#"{"type":"rate","conv":"c00000000000000ab"}"#),
            ErrorCode::MissingField
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"context","page":"https://x/cart","lang":"fr-FR"}"#)
                .unwrap(),
            ClientFrame::Context {
                page: Some("https://x/cart".into()),
                referrer: None,
                user_agent: None,
                lang: Some("fr-FR".into()),
                name: None,
                email: None,
            }
        );
        let long = format!(
            r#"{{"type":"context","page":"{}"}}"#,
            "x".repeat(MAX_CONTEXT_LEN + 1)
        );
        assert_eq!(code(&long), ErrorCode::InvalidField);
        assert_eq!(
            code(r#"{"type":"context","lang":7}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"presence","status":"away"}"#).unwrap(),
            ClientFrame::Presence { away: true }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"presence","status":"online"}"#).unwrap(),
            ClientFrame::Presence { away: false }
        );
        assert_eq!(
            code(r#"{"type":"presence","status":"busy"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(code(r#"{"type":"presence"}"#), ErrorCode::MissingField);
    }

    fn code(text: &str) -> ErrorCode {
        decode_client_frame(text).unwrap_err().code
    }

    #[test]
    fn transfers_name_an_agent_or_the_queue() {
        let c = ConvId(0xab);
        assert_eq!(
            decode_client_frame(
                r#"{"type":"transfer","conv":"c00000000000000ab","to":"bob","note":"billing"}"#
            )
            .unwrap(),
            ClientFrame::Transfer {
                conv: c,
                to: AgentId::new("bob"),
                team: None,
                note: Some("billing".into())
            }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"transfer","conv":"c00000000000000ab"}"#).unwrap(),
            ClientFrame::Transfer {
                conv: c,
                to: None,
                team: None,
                note: None
            }
        );
        assert_eq!(
            decode_client_frame(
                r#"{"type":"transfer","conv":"c00000000000000ab","team":"billing"}"#
            )
            .unwrap(),
            ClientFrame::Transfer {
                conv: c,
                to: None,
                team: Some("billing".into()),
                note: None
            }
        );
        assert_eq!(
            code(r#"{"type":"transfer","conv":"c00000000000000ab","to":"bob","team":"sales"}"#),
            ErrorCode::InvalidField,
            "one or the other"
        );
        assert_eq!(code(r#"{"type":"transfer"}"#), ErrorCode::MissingField);
        assert_eq!(
            code(r#"{"type":"transfer","conv":"c00000000000000ab","to":"b o b"}"#),
            ErrorCode::InvalidField
        );
        let long = format!(
            r#"{{"type":"transfer","conv":"c00000000000000ab","note":"{}"}}"#,
            "x".repeat(MAX_NOTE_LEN + 1)
        );
        assert_eq!(code(&long), ErrorCode::InvalidField);
    }

    #[test]
    fn decodes_every_frame_type() {
        let c = ConvId(0xab);
        assert_eq!(
            decode_client_frame(r#"{"type":"msg","cid":"1","body":"hi"}"#).unwrap(),
            ClientFrame::Msg {
                cid: "1".into(),
                body: "hi".into(),
                conv: None
            }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"msg","cid":"1","body":"h\u00e9\n","conv":"c00000000000000ab","extra":[1,{"a":2}]}"#).unwrap(),
            ClientFrame::Msg { cid: "1".into(), body: "hé\n".into(), conv: Some(c) }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"typing"}"#).unwrap(),
            ClientFrame::Typing { conv: None }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"read","conv":"c00000000000000ab","seq":7}"#).unwrap(),
            ClientFrame::Read {
                conv: Some(c),
                seq: 7
            }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"resume","conv":"c00000000000000ab","last_seq":0}"#)
                .unwrap(),
            ClientFrame::Resume {
                conv: c,
                last_seq: 0
            }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"close","conv":"c00000000000000ab"}"#).unwrap(),
            ClientFrame::Close { conv: c }
        );
    }

    #[test]
    fn bad_input_gets_the_documented_code() {
        let cases = [
            ("", ErrorCode::BadJson),
            ("{", ErrorCode::BadJson),
            ("[1,2]", ErrorCode::BadJson),
            ("\"msg\"", ErrorCode::BadJson),
            (
                r#"{"type":"msg","cid":"1","body":"x"} trailing"#,
                ErrorCode::BadJson,
            ),
            ("{}", ErrorCode::UnknownType),
            (r#"{"type":5}"#, ErrorCode::UnknownType),
            (r#"{"type":"launch"}"#, ErrorCode::UnknownType),
            (r#"{"type":"msg","body":"x"}"#, ErrorCode::MissingField),
            (r#"{"type":"msg","cid":"1"}"#, ErrorCode::MissingField),
            (
                r#"{"type":"msg","cid":1,"body":"x"}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"msg","cid":"","body":"x"}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"msg","cid":"1","body":""}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"msg","cid":"1","body":{"a":1}}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"msg","cid":"1","body":"x","conv":"nope"}"#,
                ErrorCode::InvalidField,
            ),
            (r#"{"type":"read","seq":-1}"#, ErrorCode::InvalidField),
            (r#"{"type":"read","seq":1.5}"#, ErrorCode::InvalidField),
            (r#"{"type":"read"}"#, ErrorCode::MissingField),
            (r#"{"type":"resume","last_seq":1}"#, ErrorCode::MissingField),
            (
                r#"{"type":"resume","conv":"c00000000000000ab"}"#,
                ErrorCode::MissingField,
            ),
            (r#"{"type":"close"}"#, ErrorCode::MissingField),
        ];
        for (text, expected) in cases {
            assert_eq!(code(text), expected, "{text}");
        }
    }

    #[test]
    fn errors_carry_the_cid_when_readable() {
        let err = decode_client_frame(r#"{"type":"msg","cid":"abc","body":7}"#).unwrap_err();
        assert_eq!(err.cid.as_deref(), Some("abc"));
        let long = format!(r#"{{"type":"msg","cid":"{}","body":"x"}}"#, "x".repeat(65));
        let err = decode_client_frame(&long).unwrap_err();
        assert_eq!((err.code, err.cid), (ErrorCode::InvalidField, None));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,200}") {
            let _ = decode_client_frame(&s);
        }

        #[test]
        fn msg_round_trips_any_body(cid in "[a-zA-Z0-9-]{1,64}", body in ".{1,300}") {
            let text = serde_json::json!({"type":"msg","cid":cid,"body":body}).to_string();
            prop_assert_eq!(
                decode_client_frame(&text).unwrap(),
                ClientFrame::Msg { cid, body, conv: None }
            );
        }
    }
}
