//! Every error of the HTTP API has one JSON shape, `{"code": "...", "message": "..."}`,
//! with a stable machine-readable `code` and a human `message`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable: `bad_request`, `bad_id`, `unauthorized`, `bad_credentials`, `disabled`,
    /// `forbidden`, `not_found`, `unavailable`.
    pub code: String,
    pub message: String,
}

/// An error response: its status and body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// A request the server cannot read (bad JSON, query or path), as its `bad_request`.
    pub fn bad_request(why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", why.to_string())
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an agent token is required (Authorization: Bearer ...)",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is unavailable; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&self.body).expect("error bodies serialise"),
        )
            .into_response()
    }
}
