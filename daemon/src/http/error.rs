//! Errors in OpenAI's shape, `{"error": {"message", "type", "code"}}`, with the HTTP status
//! clients branch on (the `openai` package maps 400/401/404/413/429/503 to its own
//! exception classes).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use batchd_protocol::ErrorCode;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// OpenAI's (or batchd's) machine-readable `code`.
    pub code: &'static str,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: String,
    ) -> Self {
        Self {
            status,
            message,
            kind,
            code,
        }
    }

    /// A malformed or unacceptable request (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message.into(),
        )
    }

    /// The engine let go of a request without finishing it (it stopped).
    pub fn engine_gone() -> Self {
        Self::from_engine(ErrorCode::Internal, "the engine dropped the request".into())
    }

    /// The engine refused or failed a request: the same codes the socket protocol sends.
    pub fn from_engine(code: ErrorCode, message: String) -> Self {
        let (status, kind, code) = match code {
            ErrorCode::InvalidRequest | ErrorCode::DuplicateId => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
            ),
            ErrorCode::PromptTooLong => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            ErrorCode::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
            ),
            ErrorCode::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "shutting_down",
            ),
            ErrorCode::FrameTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
            ),
            ErrorCode::Unauthorized => (StatusCode::FORBIDDEN, "permission_error", "unauthorized"),
            ErrorCode::BadFrame
            | ErrorCode::VersionMismatch
            | ErrorCode::ProtocolViolation
            | ErrorCode::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal",
            ),
        };
        Self::new(status, kind, code, message)
    }

    /// The JSON body (also sent as an SSE event when a stream fails midway).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {"message": self.message, "type": self.kind, "code": self.code}
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            // The queue drains within a step or two; a second is a polite first retry.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
