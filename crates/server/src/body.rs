//! Reading request bodies: JSON, multipart (field `image`), query vectors
//! (little-endian f32) or raw image bytes, within the size limit and the
//! request timeout, never letting a parser's panic through; and parsing a
//! search request (or a batch of them) into the pipeline's queries
//! ([`parse_search`] does it without a collection, for tests and fuzzing).

use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use imgsim_pipeline::search::Query;

use crate::api::{BatchRequest, SearchParams, SearchRequest, MAX_EF, MAX_K, VECTORS_MEDIA_TYPE};
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
    /// A JSON search request (or a form without an image).
    Json(SearchRequest),
    /// Query vectors ([`VECTORS_MEDIA_TYPE`]): f32 values, not yet checked
    /// against the collection's dimension (see [`check_vectors`]).
    Vectors(Vec<f32>),
    /// An image, with the file name the client gave (or `upload`), and the
    /// other fields of its form.
    Image {
        bytes: Vec<u8>,
        name: String,
        form: FormFields,
    },
}

/// The text fields a search form may carry beside `image`.
#[derive(Debug, Default)]
pub(crate) struct FormFields {
    text: Option<String>,
    text_weight: Option<f32>,
    label: Option<String>,
}

impl FormFields {
    fn is_empty(&self) -> bool {
        self.text.is_none() && self.text_weight.is_none() && self.label.is_none()
    }
}

/// Longest text field of a form.
const MAX_FIELD_BYTES: usize = imgsim_embed::text::MAX_TEXT_BYTES;

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

/// The request's content type, lower case ("" when it has none).
fn content_type(headers: &actix_web::http::header::HeaderMap) -> String {
    headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether a (lower-case) content type is [`VECTORS_MEDIA_TYPE`]
/// (parameters after `;` aside).
fn is_vectors(ctype: &str) -> bool {
    ctype.split(';').next().map(str::trim) == Some(VECTORS_MEDIA_TYPE)
}

/// Reads a body of little-endian f32 values within `limit` bytes; 400
/// when its length is not a whole number of them.
async fn read_f32<S: Body>(payload: S, limit: usize) -> Result<Vec<f32>, ApiError> {
    let bytes = read_limited(payload, limit).await?;
    if bytes.len() % 4 != 0 {
        return Err(ApiError::invalid(format!(
            "the body is {} bytes, not a whole number of 4-byte f32 values \
             ({VECTORS_MEDIA_TYPE}: little-endian f32, the collection's dimension \
             of them per vector)",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Checks query vectors sent as f32 values against collection
/// `collection` of dimension `dim`: a whole number of vectors (exactly one
/// when `one`), every value finite. Returns how many vectors they are.
pub(crate) fn check_vectors(
    values: &[f32],
    dim: usize,
    collection: &str,
    one: bool,
) -> Result<usize, ApiError> {
    if dim == 0 {
        return Err(ApiError::internal(format!(
            "collection `{collection}` has dimension 0"
        )));
    }
    if one && values.len() != dim {
        return Err(ApiError::invalid(format!(
            "the body holds {} f32 values; collection `{collection}` has dimension {dim}: \
             send one vector of {dim} values ({} bytes), or several to /search/batch",
            values.len(),
            dim * 4
        )));
    }
    if !values.len().is_multiple_of(dim) {
        return Err(ApiError::invalid(format!(
            "the body holds {} f32 values, not a whole number of vectors of dimension \
             {dim} (collection `{collection}`): {} vectors and {} values over",
            values.len(),
            values.len() / dim,
            values.len() % dim
        )));
    }
    for (i, v) in values.chunks_exact(dim).enumerate() {
        imgsim_index::distance::check_finite(v, i)?;
    }
    Ok(values.len() / dim)
}

/// Reads a JSON search request, query vectors, a multipart upload (field
/// `image`) or a raw image body. `allow_json` (the search endpoint) allows
/// the first two, and form fields beside `image`.
pub(crate) async fn read_input<S: Body>(
    headers: &actix_web::http::header::HeaderMap,
    payload: S,
    limit: usize,
    allow_json: bool,
) -> Result<Input, ApiError> {
    let ctype = content_type(headers);
    if is_vectors(&ctype) {
        if !allow_json {
            return Err(ApiError::unsupported(
                "this endpoint takes an image (multipart field `image`, or the raw bytes)",
            ));
        }
        return Ok(Input::Vectors(read_f32(payload, limit).await?));
    }
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
        let mut form = FormFields::default();
        // Every field is read: `image`, and for searches `text`,
        // `text_weight` and `label`.
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
            if allow_json && matches!(field_name.as_str(), "text" | "text_weight" | "label") {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::invalid(format!("malformed multipart body: {e}")))?;
                    if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
                        return Err(ApiError::TooLarge(format!(
                            "the form field `{field_name}` exceeds {MAX_FIELD_BYTES} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let value = String::from_utf8(bytes).map_err(|_| {
                    ApiError::invalid(format!("the form field `{field_name}` is not UTF-8 text"))
                })?;
                let slot_taken = match field_name.as_str() {
                    "text" => form.text.replace(value).is_some(),
                    "label" => form.label.replace(value).is_some(),
                    _ => {
                        let w = value.trim().parse::<f32>().map_err(|_| {
                            ApiError::invalid(format!(
                                "the form field `text_weight` is not a number: {:?}",
                                value.chars().take(40).collect::<String>()
                            ))
                        })?;
                        form.text_weight.replace(w).is_some()
                    }
                };
                if slot_taken {
                    return Err(ApiError::invalid(format!(
                        "the multipart body has two `{field_name}` fields; send one"
                    )));
                }
                continue;
            }
            if field_name != "image" {
                let shown: String = field_name.chars().take(40).collect();
                let known = if allow_json {
                    "the form's fields are `image`, `text`, `text_weight` and `label`"
                } else {
                    "the form has one field, `image`"
                };
                return Err(ApiError::invalid(format!(
                    "unexpected multipart field {shown:?}: {known}"
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
            Some((bytes, name)) => Ok(Input::Image { bytes, name, form }),
            // Words alone (or words with a label) need no image.
            None if form.text.is_some() => Ok(Input::Json(SearchRequest {
                text: form.text,
                text_weight: form.text_weight,
                label: form.label,
                ..SearchRequest::default()
            })),
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
        form: FormFields::default(),
    })
}

/// What a batch request's body carried.
pub(crate) enum BatchInput {
    /// `{"searches": [...]}`.
    Json(Vec<SearchRequest>),
    /// Query vectors ([`VECTORS_MEDIA_TYPE`]), not yet checked against the
    /// collection's dimension.
    Vectors(Vec<f32>),
}

/// Reads the body of a batch of searches: JSON `{"searches": [...]}` or
/// query vectors; any other content type is 415.
pub(crate) async fn read_batch<S: Body>(
    headers: &actix_web::http::header::HeaderMap,
    payload: S,
    limit: usize,
) -> Result<BatchInput, ApiError> {
    let ctype = content_type(headers);
    if is_vectors(&ctype) {
        return Ok(BatchInput::Vectors(read_f32(payload, limit).await?));
    }
    if ctype.starts_with("application/json") {
        let body = read_limited(payload, limit).await?;
        let r: BatchRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
        return Ok(BatchInput::Json(r.searches));
    }
    Err(ApiError::unsupported(format!(
        "a batch is JSON {{\"searches\": [...]}} (application/json) or query vectors \
         ({VECTORS_MEDIA_TYPE}), not {:?}",
        ctype.chars().take(60).collect::<String>()
    )))
}

/// The searches of a batch, each with its parameters (`base`, the query
/// string's, overridden by each JSON search's own fields), checked as
/// single searches are; 413 over `max` searches. A JSON search's error
/// names its place (`searches[3]: ...`), a vector's names its index.
pub(crate) fn batch_queries(
    input: BatchInput,
    base: &SearchParams,
    dim: usize,
    collection: &str,
    max: usize,
) -> Result<Vec<(Query, SearchParams)>, ApiError> {
    let too_many = |n: usize| {
        ApiError::TooLarge(format!(
            "the batch holds {n} searches; at most {max} are allowed in one request \
             (server.max_batch): split it"
        ))
    };
    match input {
        BatchInput::Json(searches) => {
            if searches.len() > max {
                return Err(too_many(searches.len()));
            }
            searches
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut p = base.clone();
                    let q = to_query(Input::Json(r), &mut p)
                        .map_err(|e| e.context(&format!("searches[{i}]")))?;
                    Ok((q, p))
                })
                .collect()
        }
        BatchInput::Vectors(values) => {
            let n = check_vectors(&values, dim, collection, false)?;
            if n > max {
                return Err(too_many(n));
            }
            values
                .chunks_exact(dim)
                .map(|v| {
                    let mut p = base.clone();
                    let q = to_query(Input::Vectors(v.to_vec()), &mut p)?;
                    Ok((q, p))
                })
                .collect()
        }
    }
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

/// Whether the request says its body is JSON.
pub(crate) fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"))
}

/// Reads a JSON body of type `T` within `limit` bytes.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_limited(payload, limit).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))
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
        Input::Image { bytes, name, form } => {
            debug_assert!(form.is_empty(), "fields beside `image` are refused here");
            Ok((bytes, name))
        }
        Input::Json(_) | Input::Vectors(_) => Err(ApiError::unsupported(
            "this endpoint takes an image (multipart field `image`, or the raw bytes)",
        )),
    }
}

/// The query a body asks for; JSON fields override query parameters, and
/// `p` is left holding the merged parameters (k and ef checked).
pub(crate) fn to_query(input: Input, p: &mut SearchParams) -> Result<Query, ApiError> {
    let picture = match input {
        Input::Json(r) => {
            p.k = r.k.or(p.k);
            p.ef = r.ef.or(p.ef);
            p.exact = r.exact.or(p.exact);
            p.with_recall = r.with_recall.or(p.with_recall);
            p.text = r.text.or(p.text.take());
            p.text_weight = r.text_weight.or(p.text_weight);
            p.label = r.label.or(p.label.take());
            match (r.vector, r.id) {
                (Some(v), None) => Some(Query::Vector(v)),
                (None, Some(id)) => Some(Query::Id(id)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid("give at most one of `vector` and `id`"))
                }
            }
        }
        Input::Vectors(v) => Some(Query::Vector(v)),
        Input::Image { bytes, name, form } => {
            p.text = form.text.or(p.text.take());
            p.text_weight = form.text_weight.or(p.text_weight);
            p.label = form.label.or(p.label.take());
            Some(Query::Image { bytes, name })
        }
    };
    if let Some(w) = p.text_weight {
        if p.text.is_none() {
            return Err(ApiError::invalid("`text_weight` needs `text`"));
        }
        if !(0.0..=1.0).contains(&w) {
            return Err(ApiError::invalid(format!(
                "text_weight must be between 0 and 1, not {w}"
            )));
        }
    }
    if let Some(l) = &p.label {
        imgsim_index::check_label(l).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let q = match (picture, p.text.clone()) {
        (Some(q), None) => q,
        (None, Some(text)) => Query::Text(text),
        (Some(q), Some(text)) => Query::ImageText {
            image: Box::new(q),
            text,
            text_weight: p
                .text_weight
                .unwrap_or(imgsim_pipeline::search::DEFAULT_TEXT_WEIGHT),
        },
        (None, None) => {
            return Err(ApiError::invalid(
                "give one of `vector`, `id` or `text` (or upload an image)",
            ))
        }
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
    /// Words, this many bytes.
    Text(usize),
    /// An image-like query (vector, id or image) with words of this many bytes.
    ImageText(Box<ParsedQuery>, usize),
}

/// Parses a search request exactly as `POST /collections/{c}/search` does
/// before any work is done: the query string, then the body by its
/// content type (JSON, query vectors, multipart with field `image`, or raw
/// bytes), with
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
    let q = parsed(to_query(input, &mut p)?)?;
    Ok((q, p))
}

fn parsed(q: Query) -> Result<ParsedQuery, ApiError> {
    Ok(match q {
        Query::Vector(v) => ParsedQuery::Vector(v.len()),
        Query::Id(id) => ParsedQuery::Id(id),
        Query::Image { bytes, .. } => ParsedQuery::Image(bytes.len()),
        Query::Text(t) => ParsedQuery::Text(t.len()),
        Query::ImageText { image, text, .. } => {
            ParsedQuery::ImageText(Box::new(parsed(*image)?), text.len())
        }
        Query::File(_) => return Err(ApiError::internal("a request body never names a file")),
    })
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
