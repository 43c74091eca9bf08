//! API keys for the site's other systems (CRM, ticketing, its back end): each scoped to
//! what it may do, revocable, and kept only as a hash. A key is shown once, when it is made:
//! `sbk_<id>_<secret>`, where the id names it (in lists, logs and revocation) and the
//! 256-bit random secret proves it; the store keeps the secret's SHA-256 (a random secret
//! needs no slow hash: nothing to guess).

use crate::store::ApiKeyRow;
use rand_core::RngCore;
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum Scope {
    /// Read conversations' messages.
    #[serde(rename = "history:read")]
    HistoryRead,
    /// List, create and change agent accounts.
    #[serde(rename = "agents:manage")]
    AgentsManage,
    /// Identify the site's customers (visitor tokens) and read their profiles.
    #[serde(rename = "visitors:identify")]
    VisitorsIdentify,
    /// Post system messages into conversations.
    #[serde(rename = "messages:send")]
    MessagesSend,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HistoryRead => "history:read",
            Self::AgentsManage => "agents:manage",
            Self::VisitorsIdentify => "visitors:identify",
            Self::MessagesSend => "messages:send",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::HistoryRead,
            Self::AgentsManage,
            Self::VisitorsIdentify,
            Self::MessagesSend,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A new key: its id and the whole key to hand over (once), and its row to store.
pub fn generate(
    name: &str,
    scopes: &[Scope],
    created_by: &str,
    site: &str,
    now_ms: i64,
) -> (String, ApiKeyRow) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut id);
    rand_core::OsRng.fill_bytes(&mut secret);
    let id = format!("k{}", crate::random::hex(&id));
    let secret = crate::random::hex(&secret);
    let row = ApiKeyRow {
        id: id.clone(),
        site: site.to_owned(),
        secret_sha256: sha256_hex(&secret),
        name: name.to_owned(),
        scopes: scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
        created_by: created_by.to_owned(),
        created_at: now_ms,
        revoked_at: None,
    };
    (format!("sbk_{id}_{secret}"), row)
}

/// The id and secret of a presented key, if it has the shape of one.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("sbk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 17 && secret.len() == 64).then_some((id, secret))
}

/// Whether `secret` is the stored key's, and the key is not revoked.
pub fn verify(row: &ApiKeyRow, secret: &str) -> bool {
    let want = row.secret_sha256.as_bytes();
    let got = sha256_hex(secret);
    // Constant time: every byte compared whatever the first difference.
    let same = want.len() == got.len()
        && want
            .iter()
            .zip(got.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same && row.revoked_at.is_none()
}

/// The scopes a stored key grants (unknown ones, from a newer bridge, are ignored).
pub fn scopes(row: &ApiKeyRow) -> Vec<Scope> {
    row.scopes.split(',').filter_map(Scope::parse).collect()
}

fn sha256_hex(s: &str) -> String {
    crate::random::hex(&Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_until_revoked_and_only_its_hash_is_kept() {
        let (key, mut row) = generate("crm", &[Scope::HistoryRead], "root", "default", 1);
        let (id, secret) = parse(&key).expect("its own shape");
        assert_eq!(id, row.id);
        assert!(!row.secret_sha256.contains(secret), "no secret stored");
        assert!(verify(&row, secret));
        assert!(!verify(&row, &"0".repeat(64)));
        assert_eq!(scopes(&row), vec![Scope::HistoryRead]);
        row.revoked_at = Some(2);
        assert!(!verify(&row, secret));
        assert!(parse("sbk_short_x").is_none() && parse("sb1.a.x").is_none());
        let (other, _) = generate("crm", &[], "root", "default", 1);
        assert_ne!(key, other);
    }
}
