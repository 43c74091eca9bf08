//! Identifiers: conversations and visitors are random 64-bit numbers shown as `c`/`v` plus 16
//! hex digits; agents are named by whoever mints their token.
//!
//! Numeric ids keep the gateway's maps cheap and are `Send`, so they cross shards as-is.

use std::fmt;
use std::sync::Arc;

/// A conversation id: `c` followed by 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvId(pub u64);

/// A visitor id: `v` followed by 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitorId(pub u64);

/// An agent id: 1 to 64 characters of `[A-Za-z0-9._@-]`, never shaped like a visitor id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(Arc<str>);

/// Whoever speaks in a conversation.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ParticipantId {
    Visitor(VisitorId),
    Agent(AgentId),
}

fn parse_prefixed_hex(s: &str, prefix: u8) -> Option<u64> {
    let bytes = s.as_bytes();
    if bytes.len() != 17 || bytes[0] != prefix {
        return None;
    }
    let hex = &s[1..];
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl ConvId {
    pub fn parse(s: &str) -> Option<Self> {
        parse_prefixed_hex(s, b'c').map(Self)
    }
}

impl VisitorId {
    pub fn parse(s: &str) -> Option<Self> {
        parse_prefixed_hex(s, b'v').map(Self)
    }
}

impl AgentId {
    pub const MAX_LEN: usize = 64;

    /// Validates an agent name. Names that look like visitor ids are refused so that nobody
    /// can appear as a visitor in a `from` field.
    pub fn new(s: &str) -> Option<Self> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if s.is_empty() || s.len() > Self::MAX_LEN || !ok_chars || VisitorId::parse(s).is_some() {
            return None;
        }
        Some(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:016x}", self.0)
    }
}
impl fmt::Debug for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{:016x}", self.0)
    }
}
impl fmt::Debug for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", &self.0)
    }
}
impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Visitor(v) => v.fmt(f),
            Self::Agent(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn conv_id_round_trips(n: u64) {
            let id = ConvId(n);
            prop_assert_eq!(ConvId::parse(&id.to_string()), Some(id));
            prop_assert_eq!(VisitorId::parse(&VisitorId(n).to_string()), Some(VisitorId(n)));
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "c",
            "c123",
            "v0000000000000000",
            "cABCDEF0123456789",
            "c00000000000000000",
            "c+000000000000001",
        ] {
            assert_eq!(ConvId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn agent_names_are_validated() {
        assert!(AgentId::new("alice@example.com").is_some());
        assert!(AgentId::new("").is_none());
        assert!(AgentId::new("has space").is_none());
        assert!(AgentId::new(&"a".repeat(65)).is_none());
        assert!(
            AgentId::new("v0123456789abcdef").is_none(),
            "looks like a visitor"
        );
    }
}

mod serde_impls {
    //! Ids travel as their text forms.
    use super::{AgentId, ConvId, ParticipantId, VisitorId};
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    macro_rules! text_serde {
        ($ty:ty, $parse:expr, $what:literal) => {
            impl Serialize for $ty {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_str(self)
                }
            }
            impl<'de> Deserialize<'de> for $ty {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    $parse(&s).ok_or_else(|| D::Error::custom(concat!("invalid ", $what)))
                }
            }
        };
    }
    text_serde!(ConvId, ConvId::parse, "conversation id");
    text_serde!(VisitorId, VisitorId::parse, "visitor id");
    text_serde!(AgentId, AgentId::new, "agent id");
    text_serde!(
        ParticipantId,
        |s: &str| VisitorId::parse(s)
            .map(ParticipantId::Visitor)
            .or_else(|| AgentId::new(s).map(ParticipantId::Agent)),
        "participant id"
    );
}
