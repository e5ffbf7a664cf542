//! The HTTP handlers, one module per resource; each parses its request,
//! calls the pipeline (on the worker pool) and maps the result. Also what
//! they share: the API key check.
//!
//! [`parse_search`], [`ParsedQuery`] and [`MAX_K`] are re-exported here,
//! where tests and the fuzz target have always found them.

pub mod images;
pub mod library;
pub mod search;
pub mod service;

pub use crate::api::MAX_K;
pub use crate::body::{parse_search, ParsedQuery};

use actix_web::HttpRequest;

use crate::error::ApiError;
use crate::state::AppState;

/// Checks the `api-key` header of a write: 401 unless it is the configured
/// key or the local token (`.imgsim-server.token`), compared in constant
/// time, as blake3 digests: no length leak. With neither set, writes are
/// refused.
pub(crate) fn check_key(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let given = req
        .headers()
        .get("api-key")
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let a = blake3::hash(given);
    let mut ok = subtle::Choice::from(0);
    for expected in [&state.options.api_key, &state.options.local_token]
        .into_iter()
        .flatten()
    {
        let b = blake3::hash(expected.as_bytes());
        ok |= a.as_bytes().ct_eq(b.as_bytes());
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
