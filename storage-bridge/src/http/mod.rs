//! The bridge's HTTP API (axum), versioned under `/api/v1` and described by an OpenAPI 3
//! document generated from the code (`GET /api/v1/openapi.json`); plus `/healthz` and
//! `/metrics`. Every error is one JSON shape (`error`).
//!
//! - [`agents`]: agent accounts: list, read, create, change (by role); [`teams`]: the
//!   site's teams, their members and who is online.
//! - [`auth`]: logging in for an agent token, refreshing it; the bearer check.
//! - [`keys`]: API keys: make, list, revoke.
//! - [`canned`]: canned replies, with variables filled in for a visitor.
//! - [`conversations`]: conversations listed by status and agent.
//! - [`history`]: a conversation's messages (zstd when asked).
//! - [`openapi`]: the document; [`assets`]: Swagger UI reading it, at `/api/docs/`, and
//!   the agent console at `/console/`.
//! - [`reports`]: conversations per day; first-response and resolution times and CSAT per
//!   agent and team.
//! - [`sites`]: the websites and brands one deployment serves; signed visitor identities.
//! - [`webhooks`]: subscriptions to events, and the deliveries that failed.
//! - [`visitors`]: customers the site identifies: visitor tokens with a priority, profiles.

mod agents;
mod assets;
mod auth;
mod canned;
mod conversations;
mod error;
mod history;
mod keys;
pub mod limits;
mod openapi;
mod reports;
mod sites;
mod teams;
pub mod tls;
mod visitors;
mod webhooks;

pub use error::{ApiError, ErrorBody};
pub use history::MAX_LIMIT;
pub use openapi::ApiDoc;

use crate::reads::Reads;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use switchboard_protocol::token::TokenSigner;

#[derive(Clone)]
pub struct Api {
    pub reads: Arc<Reads>,
    pub signer: Option<TokenSigner>,
    pub prometheus: PrometheusHandle,
    /// Where access changes go to every gateway shard.
    pub notices: crate::server::Notices,
    pub webhooks: crate::webhooks::Webhooks,
}

/// What one caller of the API may do (see [`limits`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per second per caller, sustained (0: no limit), and at once.
    pub rate_per_sec: f64,
    pub burst: f64,
    /// The largest request body accepted (413 above it).
    pub max_body_bytes: usize,
}

pub fn router(api: Api, limits: Limits) -> Router {
    let callers = limits::ApiLimits::new(limits.rate_per_sec, limits.burst);
    routes(api)
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            callers,
            limits::rate_limit,
        ))
}

fn routes(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(openapi::healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/api/docs", get(assets::docs_redirect))
        .route("/api/docs/", get(assets::docs_index))
        .route("/api/docs/{file}", get(assets::docs_file))
        .route("/console", get(assets::console_redirect))
        .route("/console/", get(assets::console_index))
        .route("/console/{file}", get(assets::console_file))
        .route("/api/v1/reports", get(reports::report))
        .route("/api/v1/teams", get(teams::list))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/agents", get(agents::list).post(agents::create))
        .route(
            "/api/v1/agents/{id}",
            get(agents::get_one).patch(agents::update),
        )
        .route("/api/v1/api-keys", get(keys::list).post(keys::create))
        .route("/api/v1/api-keys/{id}", axum::routing::delete(keys::revoke))
        .route(
            "/api/v1/canned-replies",
            get(canned::list).post(canned::create),
        )
        .route(
            "/api/v1/canned-replies/{id}",
            axum::routing::delete(canned::delete).patch(canned::update),
        )
        .route("/api/v1/canned-replies/{id}/render", post(canned::use_one))
        .route(
            "/api/v1/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/api/v1/webhooks/{id}",
            axum::routing::delete(webhooks::delete),
        )
        .route(
            "/api/v1/webhooks/{id}/dead-letters",
            get(webhooks::dead_letters),
        )
        .route("/api/v1/sites", get(sites::list).post(sites::create))
        .route(
            "/api/v1/sites/{id}",
            get(sites::get_one)
                .patch(sites::update)
                .delete(sites::delete),
        )
        .route("/api/v1/sites/{id}/identify", post(sites::identify))
        .route("/api/v1/visitors", post(visitors::identify))
        .route("/api/v1/visitors/{id}", get(visitors::profile))
        .route("/api/v1/conversations", get(conversations::list))
        .route("/api/v1/conversations/{id}", get(conversations::get_one))
        .route(
            "/api/v1/conversations/{id}/export",
            get(conversations::export),
        )
        .route(
            "/api/v1/conversations/{id}/close",
            post(conversations::close),
        )
        .route(
            "/api/v1/conversations/{id}/transfer",
            post(conversations::transfer),
        )
        .route(
            "/api/v1/conversations/{id}/notes",
            post(conversations::add_note),
        )
        .route(
            "/api/v1/conversations/{id}/tags",
            axum::routing::put(conversations::set_tags),
        )
        .route(
            "/api/v1/conversations/{id}/messages",
            get(history::history).post(conversations::post_system),
        )
        .with_state(api)
}

async fn metrics(axum::extract::State(api): axum::extract::State<Api>) -> String {
    api.prometheus.render()
}
