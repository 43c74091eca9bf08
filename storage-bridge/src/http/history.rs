//! `GET /api/v1/conversations/{id}/messages`: a conversation's history for agents' tools,
//! zstd-compressed when the client accepts it.

use super::error::{ApiError, ErrorBody, Params};
use super::Api;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// zstd level for history responses. `bench/benches/zstd_levels.rs` on a 200-message page:
/// level 1 compresses 32 KB in 34 us at ratio 7.1; level 3 takes 46 us for 6.9; level 9
/// takes 244 us for 7.9. Level 1 is the fastest and no worse.
const ZSTD_LEVEL: i32 = 1;

/// Most messages one history request returns.
pub const MAX_LIMIT: u32 = 500;

/// A page of history: `before` a seq (default: the newest), at most `limit` (1-500, 50).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Messages with a seq below this one (default: up to the newest).
    before: Option<u64>,
    /// How many, at most (1-500; default 50).
    limit: Option<u32>,
}

/// One stored message.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryItem {
    seq: u64,
    /// A visitor id, an agent id, or `bot:switchboard`.
    from: String,
    cid: String,
    body: String,
    /// Unix milliseconds.
    ts: u64,
}

impl From<switchboard_protocol::bridge::StoredMessage> for HistoryItem {
    fn from(m: switchboard_protocol::bridge::StoredMessage) -> Self {
        Self {
            seq: m.seq,
            from: m.sender,
            cid: m.cid,
            body: m.body,
            ts: m.ts,
        }
    }
}

/// A page of a conversation's messages, oldest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct HistoryPage {
    conv: String,
    messages: Vec<HistoryItem>,
}

/// A conversation's messages, newest page first (`before` to page back).
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "messages",
    params(("id" = String, Path, description = "The conversation, `c` + 16 hex digits"), HistoryQuery),
    responses(
        (status = 200, description = "The page (body zstd-compressed with `Accept-Encoding: zstd`)", body = HistoryPage),
        (status = 400, description = "Not a conversation id, or a bad query", body = ErrorBody),
        (status = 401, description = "No valid agent token or API key", body = ErrorBody),
        (status = 403, description = "A disabled account, or a key without history:read", body = ErrorBody),
        (status = 503, description = "No token secret, or the store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn history(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(q): Params<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let history_read = super::auth::need(
        crate::accounts::Role::Agent,
        Some(crate::api_keys::Scope::HistoryRead),
    );
    let me = super::auth::caller(&api, &headers, history_read).await?;
    let conv = super::conversations::visible(&api, &me, &id).await?.id;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let before = q.before.unwrap_or(u64::MAX);
    let messages = api.reads.history(conv, before, limit).await.map_err(|e| {
        tracing::warn!(error = %e, "history query failed");
        ApiError::unavailable()
    })?;
    let page = HistoryPage {
        conv: conv.to_string(),
        messages: messages.into_iter().map(HistoryItem::from).collect(),
    };
    let body = serde_json::to_string(&page).expect("pages serialise");
    let wants_zstd = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.trim().split(';').next() == Some("zstd"))
        });
    if wants_zstd {
        match zstd::bulk::compress(body.as_bytes(), ZSTD_LEVEL) {
            Ok(z) => {
                return Ok((
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CONTENT_ENCODING, "zstd"),
                        (header::VARY, "Accept-Encoding"),
                    ],
                    z,
                )
                    .into_response())
            }
            Err(e) => tracing::warn!(error = %e, "zstd failed; sending uncompressed"),
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::VARY, "Accept-Encoding"),
        ],
        body,
    )
        .into_response())
}
