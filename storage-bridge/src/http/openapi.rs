//! The API's OpenAPI 3 document, generated from the handlers' annotations (`utoipa`), and
//! served at `GET /api/v1/openapi.json`.

use super::error::ErrorBody;
use super::{
    agents, auth, canned, conversations, history, keys, reports, sites, teams, visitors, webhooks,
};
use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard API", description = "The storage bridge's REST API, version 1."),
    paths(
        auth::login,
        auth::refresh,
        agents::list,
        agents::get_one,
        agents::create,
        agents::update,
        canned::list,
        canned::create,
        canned::delete,
        canned::update,
        canned::use_one,
        webhooks::list,
        webhooks::create,
        webhooks::delete,
        webhooks::dead_letters,
        keys::create,
        keys::list,
        keys::revoke,
        visitors::identify,
        visitors::profile,
        conversations::list,
        conversations::get_one,
        conversations::add_note,
        conversations::set_tags,
        conversations::export,
        conversations::close,
        conversations::transfer,
        conversations::post_system,
        history::history,
        sites::list,
        sites::create,
        sites::get_one,
        sites::update,
        sites::delete,
        sites::identify,
        reports::report,
        teams::list,
        openapi_json,
        healthz
    ),
    components(schemas(ErrorBody)),
    modifiers(&AgentToken, &Limited),
    tags(
        (name = "auth", description = "Logging in: agent tokens"),
        (name = "agents", description = "Agent accounts"),
        (name = "sites", description = "Websites and brands one deployment serves"),
        (name = "visitors", description = "Customers the site identifies"),
        (name = "api-keys", description = "Keys for the site's other systems"),
        (name = "canned-replies", description = "Replies agents keep at hand"),
        (name = "webhooks", description = "What happens, sent to the site's systems"),
        (name = "conversations", description = "Conversations"),
        (name = "reports", description = "Figures over a period"),
        (name = "messages", description = "Conversations' messages"),
        (name = "meta", description = "This document, health")
    )
)]
pub struct ApiDoc;

/// The `agent_token` security scheme: `Authorization: Bearer <agent token>`, or an API key
/// (`sbk_...`) where the operation's scope allows one.
struct AgentToken;

impl Modify for AgentToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// What the API's limits can answer any counted operation (see `limits`): 429 when its
/// caller is over its rate, and 413 when a body is over the cap.
struct Limited;

impl Modify for Limited {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.insert(
                    "429".into(),
                    error("`rate_limited`: this caller is over its rate; retry after the `Retry-After` seconds").into(),
                );
                if op.request_body.is_some() {
                    responses.insert(
                        "413".into(),
                        error("`too_large`: the body is over the API's limit").into(),
                    );
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness: `ok`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "The bridge is up", body = String, content_type = "text/plain"))
)]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}
