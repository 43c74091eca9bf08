//! Logging in: `POST /api/v1/auth/login` trades an agent's id and password for a
//! short-lived agent token (the one the gateway verifies); `POST /api/v1/auth/refresh`
//! trades a valid token for a fresh one while the account is enabled. And the check every
//! other endpoint makes: a valid agent token in `Authorization: Bearer`.

use super::error::{ApiError, Body, ErrorBody};
use super::Api;
use crate::accounts::{self, AccountError, Role};
use crate::api_keys::{self, Scope};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use switchboard_protocol::token::{TokenKind, TokenSigner, DEFAULT_SITE};

/// Now, in Unix seconds (what tokens' expiries count in).
pub(super) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn signer(api: &Api) -> Result<&TokenSigner, ApiError> {
    api.signer.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no token secret configured",
        )
    })
}

/// The agent a request's bearer token names, if the token is valid.
pub(super) fn agent_of(api: &Api, headers: &HeaderMap) -> Result<String, ApiError> {
    let signer = signer(api)?;
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let subject = signer
        .verify(token, TokenKind::Agent, now_unix())
        .map_err(|_| ApiError::unauthorized())?;
    // The role claim is for the gateway; here the account's role counts, read fresh.
    switchboard_protocol::token::parse_agent_subject(&subject)
        .map(|claims| claims.id.as_str().to_owned())
        .ok_or_else(ApiError::unauthorized)
}

/// Who is calling: the agent a valid token names, and its role (an agent with no account,
/// from a token minted at the command line, is an `agent`); or an API key (`key:<id>`).
pub(super) struct Caller {
    pub id: String,
    pub role: Role,
    /// The site it acts for: its account's, or its key's. It sees nothing of another.
    pub site: String,
}

impl Caller {
    /// An admin of the deployment's own site: it manages sites (and their first admins).
    pub fn manages_sites(&self) -> bool {
        self.role >= Role::Admin && self.site == DEFAULT_SITE && !self.is_key()
    }

    pub fn is_key(&self) -> bool {
        self.id.starts_with("key:")
    }
}

/// What an operation needs: an agent with at least `role`, or an API key with `scope`
/// (none: agents only).
#[derive(Clone, Copy)]
pub(super) struct Need {
    pub role: Role,
    pub scope: Option<Scope>,
}

pub(super) const fn need(role: Role, scope: Option<Scope>) -> Need {
    Need { role, scope }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// An API key's caller, if the key is valid, live and has the scope needed.
async fn key_caller(api: &Api, key: &str, need: Need) -> Result<Caller, ApiError> {
    let (id, secret) = api_keys::parse(key).ok_or_else(ApiError::unauthorized)?;
    let row = api
        .reads
        .store
        .key(id)
        .await
        .map_err(|e| ApiError::store("API key lookup", e))?;
    let row = row
        .filter(|r| api_keys::verify(r, secret))
        .ok_or_else(ApiError::unauthorized)?;
    match need.scope {
        Some(scope) if api_keys::scopes(&row).contains(&scope) => Ok(Caller {
            id: format!("key:{}", row.id),
            role: need.role,
            site: row.site,
        }),
        Some(scope) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key lacks the {} scope", scope.as_str()),
        )),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "API keys may not do this; log in as an agent",
        )),
    }
}

/// The caller, if its token is valid and its account (if any) enabled, with at least
/// `need.role`; or an API key with `need.scope`.
pub(super) async fn caller(api: &Api, headers: &HeaderMap, need: Need) -> Result<Caller, ApiError> {
    let role = need.role;
    if let Some(key) = bearer(headers).filter(|b| b.starts_with("sbk_")) {
        return key_caller(api, key, need).await;
    }
    let id = agent_of(api, headers)?;
    let account = api
        .reads
        .store
        .account(&id)
        .await
        .map_err(|e| ApiError::store("account lookup", e))?;
    let (has, site) = match account {
        Some(a) if a.disabled => return Err(answer(AccountError::Disabled)),
        Some(a) => (Role::parse(&a.role).unwrap_or(Role::Agent), a.site),
        None => (Role::Agent, DEFAULT_SITE.to_owned()),
    };
    if has < role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {} role", role.as_str()),
        ));
    }
    Ok(Caller {
        id,
        role: has,
        site,
    })
}

/// An agent's credentials.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    agent: String,
    password: String,
}

/// A token for the gateway (`/ws/agent?token=`) and this API (`Authorization: Bearer`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TokenIssued {
    token: String,
    /// Unix seconds.
    expires_at: u64,
    agent: String,
    role: Role,
}

pub(super) fn answer(e: AccountError) -> ApiError {
    match e {
        AccountError::BadCredentials => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "unknown agent or wrong password",
        ),
        AccountError::Disabled => {
            ApiError::new(StatusCode::FORBIDDEN, "disabled", "the account is disabled")
        }
        AccountError::BadId | AccountError::WeakPassword => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        other => {
            tracing::warn!(error = %other, "login failed");
            ApiError::unavailable()
        }
    }
}

/// Trades an agent's id and password for a token valid for 8 hours.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = TokenIssued),
        (status = 400, description = "Not a login request", body = ErrorBody),
        (status = 401, description = "Unknown agent or wrong password", body = ErrorBody),
        (status = 403, description = "The account is disabled", body = ErrorBody),
        (status = 503, description = "No token secret, or the store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn login(
    State(api): State<Api>,
    Body(login): Body<Login>,
) -> Result<Json<TokenIssued>, ApiError> {
    let signer = signer(&api)?;
    let issued = accounts::login(
        &api.reads.store,
        signer,
        &login.agent,
        &login.password,
        now_unix(),
    )
    .await
    .map_err(answer)?;
    Ok(Json(TokenIssued {
        token: issued.token,
        expires_at: issued.expires_at,
        agent: login.agent,
        role: issued.role,
    }))
}

/// A fresh token for the holder of a valid one, while the account is enabled.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    responses(
        (status = 200, description = "A fresh token", body = TokenIssued),
        (status = 401, description = "No valid token, or no such account", body = ErrorBody),
        (status = 403, description = "The account is disabled", body = ErrorBody),
        (status = 503, description = "No token secret, or the store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn refresh(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<TokenIssued>, ApiError> {
    let agent = agent_of(&api, &headers)?;
    let issued = accounts::refresh(&api.reads.store, signer(&api)?, &agent, now_unix())
        .await
        .map_err(answer)?;
    Ok(Json(TokenIssued {
        token: issued.token,
        expires_at: issued.expires_at,
        agent,
        role: issued.role,
    }))
}
