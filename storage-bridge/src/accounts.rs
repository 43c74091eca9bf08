//! Agent accounts: who may log in, with which role, and the short-lived agent tokens a
//! login gives (the same tokens the gateway verifies, signed with the same secret).
//!
//! Passwords are stored as argon2id PHC strings (the crate's defaults: 19 MiB, 2 passes),
//! never in the clear; checking one takes tens of milliseconds, so it runs on a blocking
//! thread. A disabled account cannot log in or refresh. Accounts without a password (agents
//! the store only saw, from tokens minted at the command line) cannot log in over HTTP.

use crate::store::{AccountRow, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use switchboard_protocol::token::{TokenKind, TokenSigner};
use switchboard_protocol::AgentId;

/// How long a token from a login or a refresh is valid.
pub const TOKEN_TTL_S: u64 = 8 * 3600;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// What an account may do. Later roles include the earlier ones' rights.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Self::Agent),
            "supervisor" => Some(Self::Supervisor),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("unknown agent or wrong password")]
    BadCredentials,
    #[error("the account is disabled")]
    Disabled,
    #[error("not a valid agent id (1-64 of A-Z a-z 0-9 . _ @ -)")]
    BadId,
    #[error("a password needs at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("password hashing: {0}")]
    Hash(String),
}

/// An argon2id hash of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `password` matches the stored hash (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A token for agent `id`, valid for [`TOKEN_TTL_S`] from `now_unix`.
pub struct Issued {
    pub token: String,
    pub expires_at: u64,
    pub role: Role,
}

fn issue(signer: &TokenSigner, account: &AccountRow, now_unix: u64) -> Issued {
    let expires_at = now_unix + TOKEN_TTL_S;
    Issued {
        token: signer.mint(
            TokenKind::Agent,
            &switchboard_protocol::token::agent_subject(
                &account.id,
                &account.role,
                &account.teams,
                switchboard_protocol::token::site_claim(&account.site),
            ),
            expires_at,
        ),
        expires_at,
        role: Role::parse(&account.role).unwrap_or(Role::Agent),
    }
}

/// Creates or replaces the account `id` with `password` and `role` (the CLI's
/// `create-agent`, the first admin among them).
pub async fn create(
    store: &Store,
    id: &str,
    display_name: Option<String>,
    password: &str,
    role: Role,
) -> Result<(), AccountError> {
    AgentId::new(id).ok_or(AccountError::BadId)?;
    let hash = new_hash(password).await?;
    store
        .put_account(AccountRow {
            id: id.to_owned(),
            site: switchboard_protocol::token::DEFAULT_SITE.into(),
            display_name,
            password_hash: Some(hash),
            role: role.as_str().into(),
            max_conversations: None,
            disabled: false,
            teams: Vec::new(),
        })
        .await?;
    Ok(())
}

/// A password's hash, computed on a blocking thread, once it is long enough.
pub async fn new_hash(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountError::WeakPassword);
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
}

/// Checks `id` and `password`; a token on success. Unknown agents and wrong passwords are
/// the same error (and cost the same hashing time), so a caller cannot tell them apart.
pub async fn login(
    store: &Store,
    signer: &TokenSigner,
    id: &str,
    password: &str,
    now_unix: u64,
) -> Result<Issued, AccountError> {
    let account = store.account(id).await?;
    let hash = account
        .as_ref()
        .and_then(|a| a.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_owned());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    match account {
        Some(a) if ok && a.password_hash.is_some() => {
            if a.disabled {
                return Err(AccountError::Disabled);
            }
            Ok(issue(signer, &a, now_unix))
        }
        _ => Err(AccountError::BadCredentials),
    }
}

/// A fresh token for the holder of a valid one, while its account exists and is enabled.
pub async fn refresh(
    store: &Store,
    signer: &TokenSigner,
    agent: &str,
    now_unix: u64,
) -> Result<Issued, AccountError> {
    match store.account(agent).await? {
        Some(a) if a.disabled => Err(AccountError::Disabled),
        Some(a) if a.password_hash.is_some() => Ok(issue(signer, &a, now_unix)),
        _ => Err(AccountError::BadCredentials),
    }
}

/// The hash an unknown agent's password is checked against, so that it costs what a known
/// one does. Its password is unknowable (random at build time of this constant's author).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3dpdGNoYm9hcmRkdW1teQ$WrZ3sAD6a0B8Hs1R1Fm8Kx1VhQ8bqYw1zZgk3j0vHXo";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b, "a fresh salt each time");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("anything", DUMMY_HASH));
        assert!(
            PasswordHash::new(DUMMY_HASH).is_ok(),
            "the dummy parses, so it costs a full check"
        );
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Admin > Role::Supervisor && Role::Supervisor > Role::Agent);
        for r in [Role::Agent, Role::Supervisor, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
