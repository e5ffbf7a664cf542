//! API errors: every failure is a JSON body `{"error": {"status", "message"}}`
//! with the status code that says whose fault it is.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (JSON, parameters).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong API key.
    #[error("a valid api-key header is required for this operation")]
    Unauthorized,
    /// No such collection or item.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not (the value lists the allowed ones).
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// The client did not send its request body in time.
    #[error("{0}")]
    Timeout(String),
    /// Body larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Not an image format we decode.
    #[error("{0}")]
    Unsupported(String),
    /// An image we cannot use (damaged, too many pixels).
    #[error("{0}")]
    Unprocessable(String),
    /// The disk holding the collection is full: nothing was stored.
    #[error("{0}")]
    InsufficientStorage(String),
    /// Too much work queued.
    #[error("the server is busy: too many requests are waiting; retry shortly")]
    Busy,
    /// Something on our side.
    #[error("{0}")]
    Internal(String),
}

/// The body of every error answer (documented in the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's status and message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status code.
    pub status: u16,
    /// What happened, and what to do about it.
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let msg = self.to_string();
        let mut r = HttpResponse::build(status);
        if matches!(self, ApiError::Busy) {
            r.insert_header(("Retry-After", "1"));
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            r.insert_header(("Allow", *allow));
        }
        if matches!(self, ApiError::Unauthorized) {
            r.insert_header(("WWW-Authenticate", "api-key"));
        }
        r.json(ErrorResponse {
            error: ErrorDetail {
                status: status.as_u16(),
                message: msg,
            },
        })
    }
}

impl From<imgsim_embed::EmbedError> for ApiError {
    fn from(e: imgsim_embed::EmbedError) -> Self {
        use imgsim_embed::EmbedError as E;
        let msg = e.to_string();
        match e {
            E::Empty { .. } | E::Decode { .. } | E::TooLarge { .. } => ApiError::Unprocessable(msg),
            E::Unsupported { .. } => ApiError::Unsupported(msg),
            E::Io { .. } => ApiError::NotFound(msg),
            E::Input(_) => ApiError::BadRequest(msg),
            _ => ApiError::Internal(msg),
        }
    }
}

impl From<imgsim_index::IndexError> for ApiError {
    fn from(e: imgsim_index::IndexError) -> Self {
        use imgsim_index::IndexError as E;
        let msg = e.to_string();
        if e.is_storage_full() {
            return ApiError::InsufficientStorage(format!(
                "the disk holding the collection is full: this write was not acknowledged; free space and retry ({msg})"
            ));
        }
        match e {
            E::NotFound(_) => ApiError::NotFound(msg),
            e if e.is_user_error() => ApiError::BadRequest(msg),
            _ => ApiError::Internal(msg),
        }
    }
}

impl From<imgsim_pipeline::PipelineError> for ApiError {
    fn from(e: imgsim_pipeline::PipelineError) -> Self {
        use imgsim_pipeline::PipelineError as E;
        match e {
            E::Index(i) => i.into(),
            E::Embed(m) => m.into(),
            E::NotFound(m) => ApiError::NotFound(m),
            other if other.is_user_error() => ApiError::BadRequest(other.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
