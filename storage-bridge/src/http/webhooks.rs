//! Webhook subscriptions over the API (admins): make one (with the secret that signs its
//! deliveries), list, delete, and read the deliveries that failed every attempt.

use super::auth::{caller, need};
use super::error::{ApiError, Body, ErrorBody};
use super::Api;
use crate::accounts::Role;
use crate::store::WebhookRow;
use crate::webhooks::EVENTS;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

const ADMIN: super::auth::Need = need(Role::Admin, None);

/// Webhooks carry every site's events: only the deployment's admins (of the default site)
/// manage them.
async fn deployment_admin(api: &Api, headers: &HeaderMap) -> Result<super::auth::Caller, ApiError> {
    let me = caller(api, headers, ADMIN).await?;
    if !me.manages_sites() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "webhooks carry every site's events: admins of the default site only",
        ));
    }
    Ok(me)
}

/// A subscription to make.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewWebhook {
    /// Where deliveries go: `http://` or `https://`.
    url: String,
    /// Signs each delivery's body (HMAC-SHA256, `X-Switchboard-Signature`); 16-256
    /// characters.
    secret: String,
    /// Any of `message`, `conversation.opened`, `conversation.assigned`,
    /// `conversation.closed`.
    events: Vec<String>,
}

/// A subscription (never its secret).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Webhook {
    id: String,
    url: String,
    events: Vec<String>,
    created_by: String,
    /// Unix milliseconds.
    created_at: i64,
}

impl From<WebhookRow> for Webhook {
    fn from(w: WebhookRow) -> Self {
        Self {
            events: w.events.split(',').map(str::to_owned).collect(),
            id: w.id,
            url: w.url,
            created_by: w.created_by,
            created_at: w.created_at,
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct WebhookList {
    webhooks: Vec<Webhook>,
}

/// A delivery that failed every attempt: what was sent and why it failed.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct DeadLetter {
    /// The delivery id (`X-Switchboard-Delivery`).
    id: String,
    event: String,
    /// The body as it was sent.
    body: String,
    attempts: i64,
    last_error: String,
    /// Unix milliseconds.
    failed_at: i64,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct DeadLetterList {
    dead_letters: Vec<DeadLetter>,
}

/// Subscribes a URL to events (admins).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Subscribed", body = Webhook),
        (status = 400, description = "A bad URL, secret or event", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(new): Body<NewWebhook>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let me = deployment_admin(&api, &headers).await?;
    let url_ok = (new.url.starts_with("http://") || new.url.starts_with("https://"))
        && new.url.len() <= 2048
        && reqwest::Url::parse(&new.url).is_ok();
    if !url_ok {
        return Err(ApiError::bad_request(
            "url must be an http:// or https:// URL",
        ));
    }
    if !(16..=256).contains(&new.secret.chars().count()) {
        return Err(ApiError::bad_request("secret must be 16-256 characters"));
    }
    if new.events.is_empty() || new.events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
        return Err(ApiError::bad_request(format!(
            "events: one or more of {EVENTS:?}"
        )));
    }
    let mut events = new.events.clone();
    events.sort();
    events.dedup();
    let row = WebhookRow {
        id: crate::random::id('w'),
        url: new.url,
        secret: new.secret,
        events: events.join(","),
        created_by: me.id,
        created_at: crate::store::now_ms(),
    };
    let store = &api.reads.store;
    store
        .put_webhook(row.clone())
        .await
        .map_err(|e| ApiError::store("webhooks", e))?;
    api.webhooks
        .reload()
        .await
        .map_err(|e| ApiError::store("webhooks", e))?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Lists subscriptions (admins).
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The subscriptions", body = WebhookList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<WebhookList>, ApiError> {
    deployment_admin(&api, &headers).await?;
    let rows = api
        .reads
        .store
        .webhooks()
        .await
        .map_err(|e| ApiError::store("webhooks", e))?;
    Ok(Json(WebhookList {
        webhooks: rows.into_iter().map(Webhook::from).collect(),
    }))
}

/// Deletes a subscription (admins): no more deliveries to it.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    deployment_admin(&api, &headers).await?;
    if !api
        .reads
        .store
        .delete_webhook(&id)
        .await
        .map_err(|e| ApiError::store("webhooks", e))?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such webhook",
        ));
    }
    api.webhooks
        .reload()
        .await
        .map_err(|e| ApiError::store("webhooks", e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The deliveries to a subscription that failed every attempt, newest first (admins).
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/dead-letters",
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "Dead letters (at most 1000)", body = DeadLetterList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn dead_letters(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DeadLetterList>, ApiError> {
    deployment_admin(&api, &headers).await?;
    let rows = api
        .reads
        .store
        .dead_letters(&id)
        .await
        .map_err(|e| ApiError::store("webhooks", e))?;
    Ok(Json(DeadLetterList {
        dead_letters: rows
            .into_iter()
            .map(|d| DeadLetter {
                id: d.id,
                event: d.event,
                body: d.body,
                attempts: d.attempts,
                last_error: d.last_error,
                failed_at: d.failed_at,
            })
            .collect(),
    }))
}
