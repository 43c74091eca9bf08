//! The bridge's HTTP API (axum): conversation history for agents' tools, health and
//! metrics. History bodies are zstd-compressed when the client accepts it.

use crate::reads::Reads;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use std::sync::Arc;
use switchboard_protocol::token::{TokenKind, TokenSigner};

/// zstd level for history responses. `bench/benches/zstd_levels.rs` on a 200-message page:
/// level 1 compresses 32 KB in 34 us at ratio 7.1; level 3 takes 46 us for 6.9; level 9
/// takes 244 us for 7.9. Level 1 is the fastest and no worse.
const ZSTD_LEVEL: i32 = 1;
use switchboard_protocol::ConvId;

/// Most messages one history request returns.
pub const MAX_LIMIT: u32 = 500;

#[derive(Clone)]
pub struct Api {
    pub reads: Arc<Reads>,
    pub signer: Option<TokenSigner>,
    pub prometheus: PrometheusHandle,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/conversations/{id}/messages", get(history))
        .with_state(api)
}

async fn metrics(State(api): State<Api>) -> String {
    api.prometheus.render()
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<u32>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": message}).to_string(),
    )
        .into_response()
}

async fn history(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(signer) = &api.signer else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no token secret configured",
        );
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match token.map(|t| signer.verify(t, TokenKind::Agent, now)) {
        Some(Ok(_agent)) => {}
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "an agent token is required (Authorization: Bearer ...)",
            )
        }
    }
    let Some(conv) = ConvId::parse(&id) else {
        return error(StatusCode::BAD_REQUEST, "not a conversation id");
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let before = q.before.unwrap_or(u64::MAX);
    let messages = match api.reads.history(conv, before, limit).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "history query failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
    };
    let body = serde_json::json!({
        "conv": conv,
        "messages": messages.iter().map(|m| serde_json::json!({
            "seq": m.seq, "from": m.sender, "cid": m.cid, "body": m.body, "ts": m.ts,
        })).collect::<Vec<_>>(),
    })
    .to_string();
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
                return (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CONTENT_ENCODING, "zstd"),
                        (header::VARY, "Accept-Encoding"),
                    ],
                    z,
                )
                    .into_response()
            }
            Err(e) => tracing::warn!(error = %e, "zstd failed; sending uncompressed"),
        }
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::VARY, "Accept-Encoding"),
        ],
        body,
    )
        .into_response()
}
