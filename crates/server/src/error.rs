//! API errors: every failure is a JSON body `{"error": {"status", "message"}}`
//! whose HTTP status is derived in one place ([`ApiError::status`]): a
//! domain failure's from its [`ErrorKind`] ([`status_of`]), the HTTP-only
//! cases from their variants.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use imgsim_common::ErrorKind;
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A failure classified by its kind: the library crates' errors, and
    /// the handlers' own checks (a malformed request is `Invalid`, an
    /// unknown collection `NotFound`, ...).
    #[error("{message}")]
    Failed {
        /// What kind of failure (gives the status).
        kind: ErrorKind,
        /// What happened, and what to do about it.
        message: String,
    },
    /// Missing or wrong API key (401).
    #[error("a valid api-key header is required for this operation")]
    Unauthorized,
    /// A path the service may not read for a client (403): outside
    /// `[server] library_roots`.
    #[error("{0}")]
    Forbidden(String),
    /// The path exists, the method does not (405; the value lists the allowed ones).
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// The client did not send its request body in time (408).
    #[error("{0}")]
    BodyTimeout(String),
    /// A request body larger than the limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Too many requests wait for the workers (503, with `Retry-After`).
    #[error("the server is busy: too many requests are waiting; retry shortly")]
    Busy,
    /// The request's work did not finish within `request_timeout_s` (504).
    #[error("the work did not finish within {0} s (server.request_timeout_s)")]
    GatewayTimeout(u64),
}

/// The HTTP status of a domain failure: the one mapping from
/// [`ErrorKind`] to a status.
///
/// `TooLarge` is an image over the decoding limits (pixels, file size):
/// an unusable image, 422 like a damaged one (a request *body* over the
/// upload limit is [`ApiError::TooLarge`], 413). `Locked` is 503: the
/// collection is held by another process, a condition that passes, so a
/// retry may succeed. `PermissionDenied` (a read-only collection),
/// `Corrupt` and `Internal` are 500: the operator must look.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unprocessable | ErrorKind::TooLarge => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Locked => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::PermissionDenied | ErrorKind::Corrupt | ErrorKind::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl ApiError {
    /// A failure of kind `kind`. A full disk is answered with a fixed
    /// message (the detail, which may name server paths, is logged).
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let message = if kind == ErrorKind::StorageFull {
            tracing::warn!(error = %message, "the disk is full");
            "the disk holding the collection is full: this write was not acknowledged \
             (nothing was changed); free space and retry"
                .to_string()
        } else {
            message
        };
        ApiError::Failed { kind, message }
    }

    /// A malformed request (400).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::failed(ErrorKind::Invalid, message)
    }

    /// No such collection, item or route (404).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::failed(ErrorKind::NotFound, message)
    }

    /// Not a format this endpoint takes (415).
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        ApiError::failed(ErrorKind::Unsupported, message)
    }

    /// Something failed on our side (500).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::failed(ErrorKind::Internal, message)
    }

    /// The same error with `context` before its message (which search of
    /// a batch failed); the status does not change. Only messages a
    /// client's input caused are prefixed; the fixed ones (401, 503, 504)
    /// are left as they are.
    pub fn context(self, context: &str) -> ApiError {
        match self {
            ApiError::Failed { kind, message } => ApiError::Failed {
                kind,
                message: format!("{context}: {message}"),
            },
            ApiError::Forbidden(m) => ApiError::Forbidden(format!("{context}: {m}")),
            ApiError::TooLarge(m) => ApiError::TooLarge(format!("{context}: {m}")),
            e @ (ApiError::Unauthorized
            | ApiError::MethodNotAllowed(_)
            | ApiError::BodyTimeout(_)
            | ApiError::Busy
            | ApiError::GatewayTimeout(_)) => e,
        }
    }

    /// The HTTP status: the one place it is decided.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Failed { kind, .. } => status_of(*kind),
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
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
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let mut r = HttpResponse::build(status);
        match self {
            ApiError::Busy => {
                r.insert_header(("Retry-After", "1"));
            }
            ApiError::MethodNotAllowed(allow) => {
                r.insert_header(("Allow", *allow));
            }
            ApiError::Unauthorized => {
                r.insert_header(("WWW-Authenticate", "api-key"));
            }
            ApiError::Failed { .. }
            | ApiError::Forbidden(_)
            | ApiError::BodyTimeout(_)
            | ApiError::TooLarge(_)
            | ApiError::GatewayTimeout(_) => {}
        }
        r.json(ErrorResponse {
            error: ErrorDetail {
                status: status.as_u16(),
                message: self.to_string(),
            },
        })
    }
}

impl From<imgsim_embed::EmbedError> for ApiError {
    fn from(e: imgsim_embed::EmbedError) -> Self {
        ApiError::failed(e.kind(), e.to_string())
    }
}

impl From<imgsim_index::IndexError> for ApiError {
    fn from(e: imgsim_index::IndexError) -> Self {
        ApiError::failed(e.kind(), e.to_string())
    }
}

impl From<imgsim_pipeline::PipelineError> for ApiError {
    fn from(e: imgsim_pipeline::PipelineError) -> Self {
        if let imgsim_pipeline::PipelineError::OutsideRoots { .. } = e {
            return ApiError::Forbidden(e.to_string());
        }
        ApiError::failed(e.kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_come_from_kinds_and_variants() {
        let cases = [
            (ErrorKind::Invalid, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Unsupported, 415),
            (ErrorKind::Unprocessable, 422),
            (ErrorKind::TooLarge, 422),
            (ErrorKind::Locked, 503),
            (ErrorKind::PermissionDenied, 500),
            (ErrorKind::StorageFull, 507),
            (ErrorKind::Corrupt, 500),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(
                ApiError::failed(kind, "x").status().as_u16(),
                status,
                "{kind:?}"
            );
        }
        assert_eq!(ApiError::GatewayTimeout(3).status().as_u16(), 504);
        assert_eq!(ApiError::Busy.status().as_u16(), 503);
        assert_eq!(ApiError::TooLarge("x".into()).status().as_u16(), 413);
        assert_eq!(ApiError::BodyTimeout("x".into()).status().as_u16(), 408);
        let e = ApiError::invalid("k must be between 1 and 1000, not 0").context("searches[2]");
        assert_eq!(
            (e.status().as_u16(), e.to_string().as_str()),
            (400, "searches[2]: k must be between 1 and 1000, not 0")
        );
        assert_eq!(ApiError::Busy.context("searches[2]").status().as_u16(), 503);
        assert_eq!(
            ApiError::GatewayTimeout(3).to_string(),
            "the work did not finish within 3 s (server.request_timeout_s)"
        );
        // A full disk's message never carries the detail (server paths).
        let full = ApiError::failed(
            ErrorKind::StorageFull,
            "/srv/data/c/uploads/x.png: no space",
        );
        let msg = full.to_string();
        assert!(
            msg.contains("disk") && msg.contains("full") && !msg.contains("/srv"),
            "{msg}"
        );
    }
}
