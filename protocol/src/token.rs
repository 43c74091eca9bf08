//! HMAC-SHA256 signed tokens for agents and visitors.
//!
//! A token is `sb1.<kind>.<subject, base64url>.<expiry, unix seconds>.<signature, base64url>`.
//! The kind is signed too, so a visitor token can never pass as an agent token. The secret
//! comes from configuration; nothing here has a default key.

use crate::ids::{AgentId, VisitorId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest token accepted before any parsing (header-size hygiene).
pub const MAX_TOKEN_LEN: usize = 512;

/// What a token vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Agent,
    Visitor,
}

impl TokenKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Agent => "a",
            Self::Visitor => "v",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    #[error("malformed token")]
    Malformed,
    #[error("token is for another kind of client")]
    WrongKind,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// The subject of a visitor token: its id; `;p=N` when it carries a priority in the
/// human queue (a VIP's, minted by the site's back end through the API); `;s=site` when
/// it belongs to a site other than the deployment's default one. Signed like the rest of
/// the token, so a visitor can raise neither its priority nor cross to another site.
pub fn visitor_subject(id: VisitorId, priority: i32, site: Option<&str>) -> String {
    let mut s = id.to_string();
    if priority != 0 {
        s.push_str(&format!(";p={priority}"));
    }
    if let Some(site) = site {
        s.push_str(";s=");
        s.push_str(site);
    }
    s
}

/// What a visitor token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorClaims {
    pub id: VisitorId,
    pub priority: i32,
    /// `None`: the default site.
    pub site: Option<String>,
}

/// Reads a visitor token's subject back.
pub fn parse_visitor_subject(subject: &str) -> Option<VisitorClaims> {
    let mut parts = subject.split(';');
    let mut claims = VisitorClaims {
        id: VisitorId::parse(parts.next()?)?,
        priority: 0,
        site: None,
    };
    for part in parts {
        match part.split_once('=')? {
            ("p", p) => claims.priority = p.parse().ok()?,
            ("s", site) if is_team(site) => claims.site = Some(site.to_owned()),
            _ => return None,
        }
    }
    Some(claims)
}

/// The subject of an agent token: its id; `;r=supervisor` (or `admin`) when its account has
/// that role, which lets it watch any conversation and whisper to its agent; and `;t=a+b`
/// for the teams it takes conversations for; `;s=site` for its site, unless the default.
pub fn agent_subject(id: &str, role: &str, teams: &[String], site: Option<&str>) -> String {
    let mut s = id.to_owned();
    if matches!(role, "supervisor" | "admin") {
        s.push_str(";r=");
        s.push_str(role);
    }
    if !teams.is_empty() {
        s.push_str(";t=");
        s.push_str(&teams.join("+"));
    }
    if let Some(site) = site {
        s.push_str(";s=");
        s.push_str(site);
    }
    s
}

/// The deployment's own site: what rows, accounts and tokens without a site belong to.
pub const DEFAULT_SITE: &str = "default";

/// A site as a token claims it: none for the default site.
pub fn site_claim(site: &str) -> Option<&str> {
    (site != DEFAULT_SITE).then_some(site)
}

/// A team or site name: 1-32 of `a-z 0-9 _ -`.
pub fn is_team(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What an agent token says: who, whether it supervises, its teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentClaims {
    pub id: AgentId,
    pub supervisor: bool,
    pub teams: Vec<String>,
    /// `None`: the default site.
    pub site: Option<String>,
}

/// Reads an agent token's subject back.
pub fn parse_agent_subject(subject: &str) -> Option<AgentClaims> {
    let mut parts = subject.split(';');
    let id = AgentId::new(parts.next()?)?;
    let mut claims = AgentClaims {
        id,
        supervisor: false,
        teams: Vec::new(),
        site: None,
    };
    for part in parts {
        match part.split_once('=')? {
            ("r", "supervisor" | "admin") => claims.supervisor = true,
            ("s", site) if is_team(site) => claims.site = Some(site.to_owned()),
            ("t", teams) => {
                claims.teams = teams.split('+').map(str::to_owned).collect();
                if !claims.teams.iter().all(|t| is_team(t)) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(claims)
}

/// Mints and verifies tokens with one secret. Cheap to clone (one per shard).
#[derive(Clone)]
pub struct TokenSigner {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::SecretTooShort);
        }
        let key = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::SecretTooShort)?;
        Ok(Self { key })
    }

    fn mac(&self, kind: &str, subject_b64: &str, expiry: &str) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        for part in ["sb1", kind, subject_b64, expiry] {
            mac.update(part.as_bytes());
            mac.update(b".");
        }
        mac
    }

    /// A token for `subject` valid until `expires_unix` (seconds).
    /// A stable 64-bit id derived from `label` under this secret: the same label always
    /// gives the same id, and nobody without the secret can tell which (a customer's
    /// visitor id from the site's own customer id).
    pub fn derive_id(&self, label: &str) -> u64 {
        let mut mac = self.key.clone();
        mac.update(b"derive:");
        mac.update(label.as_bytes());
        let out = mac.finalize().into_bytes();
        u64::from_be_bytes(out[..8].try_into().expect("32 bytes"))
    }

    pub fn mint(&self, kind: TokenKind, subject: &str, expires_unix: u64) -> String {
        let subject_b64 = B64.encode(subject);
        let expiry = expires_unix.to_string();
        let sig = self
            .mac(kind.tag(), &subject_b64, &expiry)
            .finalize()
            .into_bytes();
        format!(
            "sb1.{}.{subject_b64}.{expiry}.{}",
            kind.tag(),
            B64.encode(sig)
        )
    }

    /// Checks signature, kind and expiry; returns the subject.
    pub fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        now_unix: u64,
    ) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some("sb1"), Some(tag), Some(subject_b64), Some(expiry), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        self.mac(tag, subject_b64, expiry)
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        if tag != kind.tag() {
            return Err(TokenError::WrongKind);
        }
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        if now_unix >= expiry {
            return Err(TokenError::Expired);
        }
        let subject = B64.decode(subject_b64).map_err(|_| TokenError::Malformed)?;
        String::from_utf8(subject).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"0123456789abcdef0123").unwrap()
    }

    #[test]
    fn round_trip_and_expiry() {
        let s = signer();
        let t = s.mint(TokenKind::Agent, "alice.b@x", 1000);
        assert_eq!(s.verify(&t, TokenKind::Agent, 999).unwrap(), "alice.b@x");
        assert_eq!(
            s.verify(&t, TokenKind::Agent, 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.verify(&t, TokenKind::Visitor, 5),
            Err(TokenError::WrongKind)
        );
    }

    #[test]
    fn any_alteration_is_refused() {
        let s = signer();
        let t = s.mint(TokenKind::Visitor, "v0000000000000001", 10_000);
        // Flip each character in turn: nothing but the original verifies.
        for i in 0..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != t {
                assert!(
                    s.verify(&altered, TokenKind::Visitor, 1).is_err(),
                    "{altered}"
                );
            }
        }
        let other = TokenSigner::new(b"another secret of enough length").unwrap();
        assert_eq!(
            other.verify(&t, TokenKind::Visitor, 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            s.verify("garbage", TokenKind::Visitor, 1),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            TokenSigner::new(b"short").unwrap_err(),
            TokenError::SecretTooShort
        );
    }
}
