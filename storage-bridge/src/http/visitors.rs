//! Visitors the site's back end knows: `POST /api/v1/visitors` turns the site's own
//! customer id and what it knows of them (name, e-mail, plan, VIP, custom keys) into a
//! visitor token, so a logged-in customer keeps one visitor id across devices and a VIP
//! goes ahead in the human queue; `GET /api/v1/visitors/{id}` gives agents that context.
//!
//! The visitor id is derived from the customer id under the token secret: the same customer
//! always gets the same id, and nobody can guess another's. The priority rides in the token,
//! signed, so no visitor can raise its own.

use super::auth::{caller, need};
use super::error::{ApiError, Body, ErrorBody};
use super::Api;
use crate::accounts::Role;
use crate::api_keys::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use std::collections::BTreeMap;
use switchboard_protocol::token::{site_claim, visitor_subject, TokenKind, TokenSigner};
use switchboard_protocol::VisitorId;

/// A VIP's priority in the human queue: ahead of an angry visitor's (3, from the AI layer).
pub const VIP_PRIORITY: i32 = 5;
/// How long a visitor token from the API is valid.
const TOKEN_TTL_S: u64 = 30 * 24 * 3600;
/// Custom attributes, at most, and the longest key or value.
const MAX_ATTRIBUTES: usize = 32;
const MAX_TEXT: usize = 256;

/// The visitor id of the site's customer `external_id`: the same on every device, and
/// different on every site.
pub(super) fn visitor_of(signer: &TokenSigner, site: Option<&str>, external_id: &str) -> VisitorId {
    VisitorId(signer.derive_id(&match site {
        None => format!("visitor:{external_id}"),
        // Another prefix: no default-site id can take this shape.
        Some(site) => format!("site-visitor:{site}:{external_id}"),
    }))
}

/// What the site knows of a customer.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct Profile {
    /// The customer's id on the site (1-256 characters).
    external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<String>,
    /// A VIP goes ahead of other visitors in the human queue.
    #[serde(default)]
    vip: bool,
    /// Custom keys and values (at most 32, each at most 256 characters).
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// The customer's visitor identity: connect with `/ws/visitor?token=`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct VisitorToken {
    /// `v` + 16 hex digits, the same for the same `external_id`.
    visitor: String,
    token: String,
    /// Unix seconds.
    expires_at: u64,
    /// The visitor's priority in the human queue.
    priority: i32,
}

fn check(p: &Profile) -> Result<(), ApiError> {
    let long = |s: &str| s.is_empty() || s.chars().count() > MAX_TEXT;
    if long(&p.external_id) {
        return Err(ApiError::bad_request(
            "external_id must be 1-256 characters",
        ));
    }
    let texts = [&p.name, &p.email, &p.plan];
    if texts
        .into_iter()
        .flatten()
        .any(|t| t.chars().count() > MAX_TEXT)
        || p.attributes.len() > MAX_ATTRIBUTES
        || p.attributes
            .iter()
            .any(|(k, v)| long(k) || v.chars().count() > MAX_TEXT)
    {
        return Err(ApiError::bad_request(
            "at most 32 attributes; keys 1-256 characters, values at most 256",
        ));
    }
    Ok(())
}

/// Mints a visitor token for a customer of the site (supervisors, admins, and API keys with
/// `visitors:identify`: the site's back end).
#[utoipa::path(
    post,
    path = "/api/v1/visitors",
    tag = "visitors",
    request_body = Profile,
    responses(
        (status = 200, description = "The customer's visitor identity", body = VisitorToken),
        (status = 400, description = "Not a profile, or too long", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or disabled", body = ErrorBody),
        (status = 503, description = "No token secret, or the store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn identify(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(profile): Body<Profile>,
) -> Result<Json<VisitorToken>, ApiError> {
    let me = caller(
        &api,
        &headers,
        need(Role::Supervisor, Some(Scope::VisitorsIdentify)),
    )
    .await?;
    check(&profile)?;
    let signer = api.signer.as_ref().ok_or_else(ApiError::unavailable)?;
    let site = site_claim(&me.site);
    let visitor = visitor_of(signer, site, &profile.external_id);
    let json = serde_json::to_string(&profile).expect("profiles serialise");
    api.reads
        .store
        .put_profile(&me.site, visitor, &profile.external_id, &json)
        .await
        .map_err(|e| ApiError::store("visitor profile write", e))?;
    let priority = if profile.vip { VIP_PRIORITY } else { 0 };
    Ok(Json(token_for(signer, visitor, priority, site)))
}

/// A visitor token for `visitor` of `site`, at `priority`.
pub(super) fn token_for(
    signer: &TokenSigner,
    visitor: VisitorId,
    priority: i32,
    site: Option<&str>,
) -> VisitorToken {
    let expires_at = super::auth::now_unix() + TOKEN_TTL_S;
    VisitorToken {
        visitor: visitor.to_string(),
        token: signer.mint(
            TokenKind::Visitor,
            &visitor_subject(visitor, priority, site),
            expires_at,
        ),
        expires_at,
        priority,
    }
}

/// What the site said of a visitor (any agent).
#[utoipa::path(
    get,
    path = "/api/v1/visitors/{id}",
    tag = "visitors",
    params(("id" = String, Path, description = "The visitor, `v` + 16 hex digits")),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 400, description = "Not a visitor id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled", body = ErrorBody),
        (status = 404, description = "The site has said nothing of this visitor", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn profile(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Profile>, ApiError> {
    let me = caller(
        &api,
        &headers,
        need(Role::Agent, Some(Scope::VisitorsIdentify)),
    )
    .await?;
    let visitor = VisitorId::parse(&id)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", "not a visitor id"))?;
    let json = api
        .reads
        .store
        .profile(&me.site, visitor)
        .await
        .map_err(|e| ApiError::store("visitor profile read", e))?;
    let json = json.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no profile for this visitor",
        )
    })?;
    serde_json::from_str(&json).map(Json).map_err(|e| {
        tracing::warn!(error = %e, "a stored visitor profile does not parse");
        ApiError::unavailable()
    })
}
