//! Reading request bodies: JSON, multipart (field `image`) or raw image
//! bytes, within the size limit and the request timeout, never letting a
//! parser's panic through; and parsing a search request into the
//! pipeline's query ([`parse_search`] does it without a collection, for
//! tests and fuzzing).

use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use imgsim_pipeline::search::Query;

use crate::api::{SearchParams, SearchRequest, MAX_EF, MAX_K};
use crate::error::ApiError;
use crate::state::AppState;

/// A request body as a stream of chunks (actix's payload, or bytes in tests
/// and fuzzing).
pub trait Body:
    futures_util::Stream<Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>>
    + Unpin
    + 'static
{
}

impl<S> Body for S where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>>
        + Unpin
        + 'static
{
}

/// What a request body carried.
pub(crate) enum Input {
    /// A JSON search request.
    Json(SearchRequest),
    /// An image, with the file name the client gave (or `upload`).
    Image { bytes: Vec<u8>, name: String },
}

/// Reads a whole body, refusing one over `limit` bytes (413).
async fn read_limited<S: Body>(mut payload: S, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "the body exceeds the {limit}-byte limit (server.max_upload_bytes)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON search request, a multipart upload (field `image`) or a raw
/// image body.
pub(crate) async fn read_input<S: Body>(
    headers: &actix_web::http::header::HeaderMap,
    payload: S,
    limit: usize,
    allow_json: bool,
) -> Result<Input, ApiError> {
    let ctype = headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("application/json") {
        if !allow_json {
            return Err(ApiError::unsupported(
                "this endpoint takes an image (multipart field `image`, or the raw bytes)",
            ));
        }
        let body = read_limited(payload, limit).await?;
        let r: SearchRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
        return Ok(Input::Json(r));
    }
    if ctype.starts_with("multipart/form-data") {
        let mut mp = actix_multipart::Multipart::new(headers, payload);
        let mut image: Option<(Vec<u8>, String)> = None;
        // Every field is read: the form is exactly one field, `image`.
        while let Some(field) = mp.next().await {
            let mut field =
                field.map_err(|e| ApiError::invalid(format!("malformed multipart body: {e}")))?;
            let (field_name, file_name) = {
                let cd = field.content_disposition();
                (
                    cd.and_then(|c| c.get_name()).unwrap_or("").to_string(),
                    cd.and_then(|c| c.get_filename())
                        .unwrap_or("upload")
                        .to_string(),
                )
            };
            if field_name != "image" {
                let shown: String = field_name.chars().take(40).collect();
                return Err(ApiError::invalid(format!(
                    "unexpected multipart field {shown:?}: the form has one field, `image`"
                )));
            }
            if image.is_some() {
                return Err(ApiError::invalid(
                    "the multipart body has two `image` fields; send one",
                ));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::invalid(format!("malformed multipart body: {e}")))?;
                if bytes.len() + chunk.len() > limit {
                    return Err(ApiError::TooLarge(format!(
                        "the upload exceeds the {limit}-byte limit (server.max_upload_bytes)"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            image = Some((bytes, file_name));
        }
        return match image {
            Some((bytes, name)) => Ok(Input::Image { bytes, name }),
            None => Err(ApiError::invalid(
                "the multipart body has no field named `image`",
            )),
        };
    }
    let bytes = read_limited(payload, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "empty body: send JSON ({\"vector\": [...]} or {\"id\": N}), a multipart field `image`, or image bytes",
        ));
    }
    Ok(Input::Image {
        bytes,
        name: "upload".into(),
    })
}

/// Reads a request body within `request_timeout_s`: a client sending its
/// body slowly (slowloris) is answered 408 and dropped instead of holding
/// its connection forever. (Slow headers are cut by actix's
/// `client_request_timeout`.)
pub(crate) async fn read_body<T>(
    state: &AppState,
    read: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    use futures_util::FutureExt;
    let secs = state.options.request_timeout_s.max(1);
    // A body parser that panics (actix-multipart 0.7 did, on a body the
    // fuzzer found) must not take the worker down with it.
    let guarded = std::panic::AssertUnwindSafe(read).catch_unwind();
    match tokio::time::timeout(std::time::Duration::from_secs(secs), guarded).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ApiError::invalid("the request body could not be parsed")),
        Err(_) => Err(ApiError::BodyTimeout(format!(
            "the request body did not arrive within {secs} s (server.request_timeout_s)"
        ))),
    }
}

/// Reads an uploaded image (multipart field `image`, or the raw body) for
/// the endpoints that take only an image: its bytes and name.
pub(crate) async fn read_image(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Vec<u8>, String), ApiError> {
    let limit = state.options.max_upload_bytes;
    match read_body(state, read_input(req.headers(), payload, limit, false)).await? {
        Input::Image { bytes, name } => Ok((bytes, name)),
        Input::Json(_) => Err(ApiError::unsupported(
            "this endpoint takes an image (multipart field `image`, or the raw bytes)",
        )),
    }
}

/// The query a body asks for; JSON fields override query parameters, and
/// `p` is left holding the merged parameters (k and ef checked).
pub(crate) fn to_query(input: Input, p: &mut SearchParams) -> Result<Query, ApiError> {
    let q = match input {
        Input::Json(r) => {
            p.k = r.k.or(p.k);
            p.ef = r.ef.or(p.ef);
            p.exact = r.exact.or(p.exact);
            p.with_recall = r.with_recall.or(p.with_recall);
            match (r.vector, r.id) {
                (Some(v), None) => Query::Vector(v),
                (None, Some(id)) => Query::Id(id),
                _ => return Err(ApiError::invalid("give exactly one of `vector` and `id`")),
            }
        }
        Input::Image { bytes, name } => Query::Image { bytes, name },
    };
    let k = p.k();
    if k == 0 || k > MAX_K {
        return Err(ApiError::invalid(format!(
            "k must be between 1 and {MAX_K}, not {k}"
        )));
    }
    if let Some(ef) = p.ef.filter(|&ef| ef == 0 || ef > MAX_EF) {
        return Err(ApiError::invalid(format!(
            "ef must be between 1 and {MAX_EF}, not {ef}"
        )));
    }
    Ok(q)
}

/// What a search request asks for, once parsed (see [`parse_search`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedQuery {
    /// A vector of this many components.
    Vector(usize),
    /// An indexed id.
    Id(u64),
    /// An image of this many bytes.
    Image(usize),
}

/// Parses a search request exactly as `POST /collections/{c}/search` does
/// before any work is done: the query string, then the body by its
/// content type (JSON, multipart with field `image`, or raw bytes), with
/// the body limit. For tests and fuzzing: no collection is involved.
pub fn parse_search(
    content_type: &str,
    query_string: &str,
    body: &[u8],
    limit: usize,
) -> Result<(ParsedQuery, SearchParams), ApiError> {
    let mut p = web::Query::<SearchParams>::from_query(query_string)
        .map_err(|e| ApiError::invalid(format!("bad query parameters: {e}")))?
        .into_inner();
    let mut headers = actix_web::http::header::HeaderMap::new();
    let ctype = actix_web::http::header::HeaderValue::from_str(content_type)
        .map_err(|e| ApiError::invalid(format!("bad content type: {e}")))?;
    headers.insert(actix_web::http::header::CONTENT_TYPE, ctype);
    // Two chunks, so that parsers see a body split mid-way.
    let cut = body.len() / 2;
    let chunks = vec![
        Ok(web::Bytes::copy_from_slice(&body[..cut])),
        Ok(web::Bytes::copy_from_slice(&body[cut..])),
    ];
    let stream = futures_util::stream::iter(chunks);
    let input = block_on(read_input(&headers, stream, limit, true))
        .ok_or_else(|| ApiError::internal("the body parser stalled"))??;
    let q = match to_query(input, &mut p)? {
        Query::Vector(v) => ParsedQuery::Vector(v.len()),
        Query::Id(id) => ParsedQuery::Id(id),
        Query::Image { bytes, .. } => ParsedQuery::Image(bytes.len()),
        Query::File(_) => return Err(ApiError::internal("a request body never names a file")),
    };
    Ok((q, p))
}

/// Runs a future that never waits on I/O (its stream is in memory); None
/// if it keeps answering "pending" (it never should).
fn block_on<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1_000_000 {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}
