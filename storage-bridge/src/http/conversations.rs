//! Conversations over the API: listed by status (waiting for an agent, open, closed) and
//! agent. Supervisors and keys with `history:read` see every one; an agent sees its own and
//! the waiting ones.

use super::auth::{caller, need};
use super::error::{ApiError, ErrorBody, Params};
use super::Api;
use crate::accounts::Role;
use crate::api_keys::Scope;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use switchboard_protocol::ConvId;

const PAGE_MAX: u32 = 500;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ConvQuery {
    /// `waiting` (no agent yet: left while nobody was online, or queued), `open`, `closed`,
    /// or `all` (the default).
    status: Option<String>,
    /// Only this agent's (agents always see only their own).
    agent: Option<String>,
    /// Conversations after this id, `c` + 16 hex digits (paging).
    after: Option<String>,
    /// How many, at most (1-500; default 100).
    limit: Option<u32>,
}

/// A conversation.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Conversation {
    id: String,
    visitor: String,
    agent: Option<String>,
    /// Unix milliseconds.
    opened_at: i64,
    assigned_at: Option<i64>,
    closed_at: Option<i64>,
    closed_by: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ConversationPage {
    conversations: Vec<Conversation>,
    /// The `after` of the next page, when there may be one.
    next: Option<String>,
}

/// Lists conversations.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    params(ConvQuery),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationPage),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or a key without history:read", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    Params(q): Params<ConvQuery>,
    headers: HeaderMap,
) -> Result<Json<ConversationPage>, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, Some(Scope::HistoryRead))).await?;
    let status = q.status.as_deref().unwrap_or("all");
    if !["all", "waiting", "open", "closed"].contains(&status) {
        return Err(ApiError::bad_request(
            "status: all, waiting, open or closed",
        ));
    }
    let after = match &q.after {
        None => None,
        Some(a) => Some(
            ConvId::parse(a).ok_or_else(|| ApiError::bad_request("after: a conversation id"))?,
        ),
    };
    // An agent sees its own, and those waiting for anyone; supervisors and keys whatever
    // they ask.
    let agent = if me.role >= Role::Supervisor || me.id.starts_with("key:") || status == "waiting" {
        q.agent.unwrap_or_default()
    } else {
        me.id.clone()
    };
    let limit = q.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let rows = api
        .reads
        .store
        .conversations(status, &agent, after, limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "conversations: store failed");
            ApiError::unavailable()
        })?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(Json(ConversationPage {
        conversations: rows
            .into_iter()
            .map(|c| Conversation {
                id: c.id.to_string(),
                visitor: c.visitor.to_string(),
                agent: c.agent,
                opened_at: c.opened_at,
                assigned_at: c.assigned_at,
                closed_at: c.closed_at,
                closed_by: c.closed_by,
            })
            .collect(),
        next,
    }))
}
