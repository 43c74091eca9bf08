//! Every error of the HTTP API has one JSON shape, `{"code": "...", "message": "..."}`,
//! with a stable machine-readable `code` and a human `message`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable: `bad_request`, `bad_id`, `unauthorized`, `bad_credentials`, `disabled`,
    /// `forbidden`, `not_found`, `unavailable`, `rate_limited`, `too_large`.
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

    /// The store failed: logged with what was being done, `unavailable` to the caller.
    pub fn store(what: &str, e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "{what}: store failed");
        Self::unavailable()
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

/// A JSON request body; one that does not parse is a `bad_request` in the one error shape
/// (axum's own rejection would be plain text).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            // Over `--api-max-body-bytes`.
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is over the limit",
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// A query string; one that does not parse is a `bad_request` in the one error shape.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}
