//! The static files the bridge serves from its binary (no CDN, nothing fetched at run
//! time): the agent console at `/console/` (beside the API it calls: same origin), and the
//! API's browsable documentation at `/api/docs/` (Swagger UI, vendored in
//! `assets/swagger-ui`, reading `/api/v1/openapi.json`).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// A file: its name, content type and bytes.
type File = (&'static str, &'static str, &'static [u8]);

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const DOCS: &[File] = &[
    (
        "index.html",
        HTML,
        include_bytes!("../../assets/swagger-ui/index.html"),
    ),
    (
        "swagger-ui.css",
        CSS,
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js",
        JS,
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui-init.js",
        JS,
        include_bytes!("../../assets/swagger-ui/swagger-ui-init.js"),
    ),
    (
        "LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/LICENSE"),
    ),
];

const CONSOLE: &[File] = &[
    (
        "index.html",
        HTML,
        include_bytes!("../../assets/console/index.html"),
    ),
    (
        "console.js",
        JS,
        include_bytes!("../../assets/console/console.js"),
    ),
    (
        "console.css",
        CSS,
        include_bytes!("../../assets/console/console.css"),
    ),
];

fn file(files: &[File], name: &str) -> Response {
    match files.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// `/api/docs` → `/api/docs/`, so that the page's relative links resolve.
pub(super) async fn docs_redirect() -> Redirect {
    Redirect::permanent("/api/docs/")
}

pub(super) async fn docs_index() -> Response {
    file(DOCS, "index.html")
}

pub(super) async fn docs_file(Path(name): Path<String>) -> Response {
    file(DOCS, &name)
}

/// `/console` → `/console/`.
pub(super) async fn console_redirect() -> Redirect {
    Redirect::permanent("/console/")
}

pub(super) async fn console_index() -> Response {
    file(CONSOLE, "index.html")
}

pub(super) async fn console_file(Path(name): Path<String>) -> Response {
    file(CONSOLE, &name)
}
