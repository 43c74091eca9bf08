//! API keys over the API (admins only, and never with a key): make one (shown once), list
//! them (never their secrets), revoke one.

use super::auth::{caller, need};
use super::error::{ApiError, Body, ErrorBody};
use super::Api;
use crate::accounts::Role;
use crate::api_keys::{self, Scope};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

const ADMIN: super::auth::Need = need(Role::Admin, None);

/// A key to make.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    /// What it is for (1-128 characters), e.g. `crm`.
    name: String,
    scopes: Vec<Scope>,
}

/// A key as listed: never its secret.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct KeyInfo {
    id: String,
    name: String,
    scopes: Vec<Scope>,
    created_by: String,
    /// Unix milliseconds.
    created_at: i64,
    revoked: bool,
}

/// A new key: `key` is shown this once; present it as `Authorization: Bearer <key>`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct KeyMade {
    key: String,
    #[serde(flatten)]
    info: KeyInfo,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct KeyList {
    keys: Vec<KeyInfo>,
}

fn info(row: &crate::store::ApiKeyRow) -> KeyInfo {
    KeyInfo {
        id: row.id.clone(),
        name: row.name.clone(),
        scopes: api_keys::scopes(row),
        created_by: row.created_by.clone(),
        created_at: row.created_at,
        revoked: row.revoked_at.is_some(),
    }
}

/// Makes a key (admins).
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = NewKey,
    responses(
        (status = 201, description = "The key, shown once", body = KeyMade),
        (status = 400, description = "Not a key request", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(new): Body<NewKey>,
) -> Result<(StatusCode, Json<KeyMade>), ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    if new.name.is_empty() || new.name.chars().count() > 128 {
        return Err(ApiError::bad_request("name must be 1-128 characters"));
    }
    let (key, row) = api_keys::generate(
        &new.name,
        &new.scopes,
        &me.id,
        &me.site,
        crate::store::now_ms(),
    );
    api.reads
        .store
        .put_key(row.clone())
        .await
        .map_err(|e| ApiError::store("API keys", e))?;
    tracing::info!(key = %row.id, by = %me.id, scopes = %row.scopes, "API key made");
    Ok((
        StatusCode::CREATED,
        Json(KeyMade {
            key,
            info: info(&row),
        }),
    ))
}

/// Lists keys, revoked ones too (admins).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    responses(
        (status = 200, description = "The keys (at most 1000)", body = KeyList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<KeyList>, ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    let rows = api
        .reads
        .store
        .keys(&me.site, 1000)
        .await
        .map_err(|e| ApiError::store("API keys", e))?;
    Ok(Json(KeyList {
        keys: rows.iter().map(info).collect(),
    }))
}

/// Revokes a key at once (admins).
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No live key with this id", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn revoke(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    let store = &api.reads.store;
    let fail = |e| ApiError::store("API keys", e);
    let ours = store
        .key(&id)
        .await
        .map_err(fail)?
        .is_some_and(|k| k.site == me.site);
    if !ours || !store.revoke_key(&id).await.map_err(fail)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no live key with this id",
        ));
    }
    tracing::info!(key = %id, by = %me.id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
