//! The HTTP endpoints.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use imgsim_index::{IdFilter, Neighbor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorResponse};
use crate::state::{AppState, CollectionSummary, Sample, Served};
use imgsim_pipeline::indexer::{ATTR_HASH, SOURCE_UPLOAD};

/// Largest k a search may ask for.
pub const MAX_K: usize = 1000;

/// Query parameters of a search.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Number of results (default 10, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// HNSW candidate list size (default: the ef in use, see stats).
    #[param(minimum = 1, maximum = 100000)]
    pub ef: Option<usize>,
    /// Run exact search instead of HNSW.
    pub exact: Option<bool>,
    /// Run both; return recall@k of the approximate answer and the exact list.
    pub with_recall: Option<bool>,
}

/// A search by vector or by an indexed id, as JSON.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector (the collection's dimension).
    pub vector: Option<Vec<f32>>,
    /// Or: the id of an indexed image (it is left out of the results).
    pub id: Option<u64>,
    /// Number of results.
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// HNSW candidate list size.
    #[schema(minimum = 1, maximum = 100000)]
    pub ef: Option<usize>,
    /// Exact search instead of HNSW.
    pub exact: Option<bool>,
    /// Also exact search, and recall@k.
    pub with_recall: Option<bool>,
}

/// An uploaded image as a multipart form (other fields are not part of it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageUpload {
    /// The image file (JPEG, PNG, WebP, GIF, BMP or TIFF).
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
}

/// An image as the raw request body (not empty).
#[derive(Debug)]
pub struct ImageBytes(pub Vec<u8>);

impl utoipa::PartialSchema for ImageBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .description(Some(
                "The image file's bytes (JPEG, PNG, WebP, GIF, BMP or TIFF)",
            ))
            .into()
    }
}

impl ToSchema for ImageBytes {}

/// Largest page of `GET /collections/{c}/images`.
pub const MAX_PAGE: usize = 500;
/// Largest offset of `GET /collections/{c}/images`.
pub const MAX_OFFSET: usize = 1_000_000_000;

/// Largest ef a search may ask for.
pub const MAX_EF: usize = 100_000;

/// One result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultItem {
    /// 1 for the nearest.
    pub rank: usize,
    /// Item id.
    pub id: u64,
    /// Cosine: similarity (higher is closer). L2: distance (lower is closer).
    pub score: f32,
    /// The file path (or upload name) of the item.
    pub path: String,
}

/// Where the time went, milliseconds.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Timings {
    /// Decoding and preprocessing an uploaded image.
    pub decode_ms: f64,
    /// Running the model.
    pub embed_ms: f64,
    /// The search.
    pub search_ms: f64,
    /// The exact search (with_recall).
    pub exact_ms: f64,
}

/// A search answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    /// Results, nearest first.
    pub results: Vec<ResultItem>,
    /// Total time in the service, milliseconds.
    pub took_ms: f64,
    /// Its parts.
    pub timings: Timings,
    /// The ef used (0 for exact search).
    pub ef: usize,
    /// The exact answer (with_recall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<Vec<ResultItem>>,
    /// Recall@k of `results` against `exact` (with_recall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
}

/// What a request body carried.
enum Input {
    Json(SearchRequest),
    Image { bytes: Vec<u8>, name: String },
}

async fn read_limited<S: Body>(mut payload: S, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "the body exceeds the {limit}-byte limit (server.max_upload_bytes)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

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

/// Reads a JSON search request, a multipart upload (field `image`) or a raw
/// image body.
async fn read_input<S: Body>(
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
            return Err(ApiError::Unsupported(
                "this endpoint takes an image (multipart field `image`, or the raw bytes)".into(),
            ));
        }
        let body = read_limited(payload, limit).await?;
        let r: SearchRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        return Ok(Input::Json(r));
    }
    if ctype.starts_with("multipart/form-data") {
        let mut mp = actix_multipart::Multipart::new(headers, payload);
        let mut image: Option<(Vec<u8>, String)> = None;
        // Every field is read: the form is exactly one field, `image`.
        while let Some(field) = mp.next().await {
            let mut field = field
                .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
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
                return Err(ApiError::BadRequest(format!(
                    "unexpected multipart field {shown:?}: the form has one field, `image`"
                )));
            }
            if image.is_some() {
                return Err(ApiError::BadRequest(
                    "the multipart body has two `image` fields; send one".into(),
                ));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
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
            None => Err(ApiError::BadRequest(
                "the multipart body has no field named `image`".into(),
            )),
        };
    }
    let bytes = read_limited(payload, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "empty body: send JSON ({\"vector\": [...]} or {\"id\": N}), a multipart field `image`, or image bytes".into(),
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
async fn read_body<T>(
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
        Ok(Err(_)) => Err(ApiError::BadRequest(
            "the request body could not be parsed".into(),
        )),
        Err(_) => Err(ApiError::Timeout(format!(
            "the request body did not arrive within {secs} s (server.request_timeout_s)"
        ))),
    }
}

/// Reads an uploaded image (multipart field `image`, or the raw body) for
/// the endpoints that take only an image.
async fn read_image(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Vec<u8>, String), ApiError> {
    let input = read_body(
        state,
        read_input(
            req.headers(),
            payload,
            state.options.max_upload_bytes,
            false,
        ),
    )
    .await?;
    match input {
        Input::Image { bytes, name } => Ok((bytes, name)),
        Input::Json(_) => unreachable!("JSON is refused by read_input"),
    }
}

/// Runs `f` on the worker pool, or answers 503 when too much is waiting.
async fn offload<T: Send + 'static>(
    state: &web::Data<AppState>,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = state.slots.clone().try_acquire_owned().map_err(|_| {
        state.metrics.busy.fetch_add(1, Ordering::Relaxed);
        ApiError::Busy
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.pool.spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(ApiError::Internal("the request's work panicked".into())));
        drop(permit);
        let _ = tx.send(r);
    });
    let timeout = std::time::Duration::from_secs(state.options.request_timeout_s.max(1));
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ApiError::Internal("the worker went away".into())),
        Err(_) => Err(ApiError::Busy),
    }
}

fn check_key(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let Some(expected) = state.options.api_key.as_deref() else {
        return Err(ApiError::Unauthorized);
    };
    let given = req
        .headers()
        .get("api-key")
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    // Compare digests: constant time, and no length leak.
    let a = blake3::hash(given);
    let b = blake3::hash(expected.as_bytes());
    if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn to_results(served: &Served, found: &[Neighbor]) -> Result<Vec<ResultItem>, ApiError> {
    Ok(imgsim_pipeline::search::hits(&served.collection, found)?
        .into_iter()
        .map(|h| ResultItem {
            rank: h.rank,
            id: h.id,
            score: h.score,
            path: h.path,
        })
        .collect())
}

/// Decodes and embeds image bytes with the collection's embedder; returns
/// the vector and the decode and embed times (ms).
fn embed_image(
    served: &Served,
    bytes: &[u8],
    name: &str,
    limits: &imgsim_embed::ImageLimits,
) -> Result<(Vec<f32>, f64, f64), ApiError> {
    let (e, record) = served.embedder()?;
    let t = imgsim_pipeline::search::embed_bytes_timed(
        e.as_ref(),
        record,
        bytes,
        std::path::Path::new(name),
        limits,
    )?;
    Ok((t.vector, t.decode_ms, t.embed_ms))
}

enum Query {
    Vector(Vec<f32>),
    Id(u64),
    Image(Vec<u8>, String),
}

/// The query a body asks for; JSON fields override query parameters.
fn to_query(input: Input, p: &mut SearchParams) -> Result<Query, ApiError> {
    let q = match input {
        Input::Json(r) => {
            p.k = r.k.or(p.k);
            p.ef = r.ef.or(p.ef);
            p.exact = r.exact.or(p.exact);
            p.with_recall = r.with_recall.or(p.with_recall);
            match (r.vector, r.id) {
                (Some(v), None) => Query::Vector(v),
                (None, Some(id)) => Query::Id(id),
                _ => {
                    return Err(ApiError::BadRequest(
                        "give exactly one of `vector` and `id`".into(),
                    ))
                }
            }
        }
        Input::Image { bytes, name } => Query::Image(bytes, name),
    };
    let k = p.k.unwrap_or(10);
    if k == 0 || k > MAX_K {
        return Err(ApiError::BadRequest(format!(
            "k must be between 1 and {MAX_K}, not {k}"
        )));
    }
    if let Some(ef) = p.ef.filter(|&ef| ef == 0 || ef > MAX_EF) {
        return Err(ApiError::BadRequest(format!(
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
        .map_err(|e| ApiError::BadRequest(format!("bad query parameters: {e}")))?
        .into_inner();
    let mut headers = actix_web::http::header::HeaderMap::new();
    let ctype = actix_web::http::header::HeaderValue::from_str(content_type)
        .map_err(|e| ApiError::BadRequest(format!("bad content type: {e}")))?;
    headers.insert(actix_web::http::header::CONTENT_TYPE, ctype);
    // Two chunks, so that parsers see a body split mid-way.
    let cut = body.len() / 2;
    let chunks = vec![
        Ok(web::Bytes::copy_from_slice(&body[..cut])),
        Ok(web::Bytes::copy_from_slice(&body[cut..])),
    ];
    let stream = futures_util::stream::iter(chunks);
    let input = block_on(read_input(&headers, stream, limit, true))
        .ok_or_else(|| ApiError::Internal("the body parser stalled".into()))??;
    let q = match to_query(input, &mut p)? {
        Query::Vector(v) => ParsedQuery::Vector(v.len()),
        Query::Id(id) => ParsedQuery::Id(id),
        Query::Image(b, _) => ParsedQuery::Image(b.len()),
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

fn run_search(
    state: &AppState,
    served: &Arc<Served>,
    query: Query,
    p: &SearchParams,
) -> Result<SearchResponse, ApiError> {
    let started = Instant::now();
    let k = p.k.unwrap_or(10);
    let mut timings = Timings::default();
    let (vector, exclude) = match query {
        Query::Vector(v) => (v, None),
        Query::Id(id) => (served.collection.vector(id)?, Some(id)),
        Query::Image(bytes, name) => {
            let (v, d, e) = embed_image(served, &bytes, &name, &state.options.limits)?;
            timings.decode_ms = d;
            timings.embed_ms = e;
            (v, None)
        }
    };
    let not = exclude.map(imgsim_pipeline::search::Except);
    let filter = not.as_ref().map(|f| f as &dyn IdFilter);
    let exact_only = p.exact.unwrap_or(false);
    let with_recall = p.with_recall.unwrap_or(false);
    let ef =
        p.ef.unwrap_or_else(|| served.ef.load(Ordering::Relaxed))
            .max(k);
    let t = Instant::now();
    let found = if exact_only {
        served.collection.search_exact(&vector, k, filter)?
    } else {
        served.collection.search(&vector, k, Some(ef), filter)?
    };
    timings.search_ms = t.elapsed().as_secs_f64() * 1e3;
    served.searches.fetch_add(1, Ordering::Relaxed);
    state.metrics.search_count.fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .search_micros
        .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    let (exact, recall) = if with_recall && !exact_only {
        let t = Instant::now();
        let truth = served.collection.search_exact(&vector, k, filter)?;
        timings.exact_ms = t.elapsed().as_secs_f64() * 1e3;
        let r = imgsim_index::recall_at_k_by_distance(
            &found,
            &truth,
            k,
            imgsim_pipeline::search::RECALL_EPSILON,
        );
        (Some(to_results(served, &truth)?), Some(r))
    } else if with_recall {
        (Some(to_results(served, &found)?), Some(1.0))
    } else {
        (None, None)
    };
    let results = to_results(served, &found)?;
    if !exact_only && exclude.is_none() && state.sample_this() {
        // Never blocks: a full estimator queue drops the sample.
        let _ = state.samples.try_send(Sample {
            collection: served.clone(),
            vector,
            approx: found,
            k,
        });
    }
    Ok(SearchResponse {
        results,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        timings,
        ef: if exact_only { 0 } else { ef },
        exact,
        recall_at_k: recall,
    })
}

/// Search a collection by uploaded image, JSON vector, or indexed id.
#[utoipa::path(
    post,
    path = "/collections/{collection}/search",
    params(("collection" = String, Path, description = "Collection name"), SearchParams),
    request_body(description = "JSON {\"vector\": [...]} or {\"id\": N}; or multipart/form-data with the image in field `image`; or the raw image bytes (image/jpeg, image/png, ...)",
        content((SearchRequest = "application/json"), (ImageUpload = "multipart/form-data"), (ImageBytes = "application/octet-stream"))),
    responses(
        (status = 200, description = "Ranked results", body = SearchResponse),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 404, description = "No such collection or id", body = ErrorResponse),
        (status = 408, description = "The body did not arrive within request_timeout_s", body = ErrorResponse),
        (status = 413, description = "Body over the upload limit", body = ErrorResponse),
        (status = 415, description = "Not an image format imgsim decodes", body = ErrorResponse),
        (status = 422, description = "An image that cannot be used (damaged, too many pixels)", body = ErrorResponse),
        (status = 503, description = "Busy: retry after the Retry-After seconds", body = ErrorResponse),
    )
)]
pub async fn search(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<SearchParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let served = state.get(&path)?;
    let input = read_body(
        &state,
        read_input(req.headers(), payload, state.options.max_upload_bytes, true),
    )
    .await?;
    let mut p = params.into_inner();
    let query = to_query(input, &mut p)?;
    let st = state.clone();
    let resp = offload(&state, move || run_search(&st, &served, query, &p)).await?;
    Ok(HttpResponse::Ok().json(resp))
}

/// An added image.
#[derive(Debug, Serialize, ToSchema)]
pub struct Added {
    /// Its id.
    pub id: u64,
    /// The name it is listed under.
    pub path: String,
    /// Milliseconds.
    pub took_ms: f64,
    /// True when these bytes were already stored: `id` is the existing
    /// item's and nothing was added (status 200 instead of 201).
    pub existing: bool,
}

/// Item attribute of uploads: where the bytes are kept.
const ATTR_FILE: &str = "file";

fn storage_error(what: &str, e: std::io::Error) -> ApiError {
    if imgsim_index::error::is_storage_full(&e) {
        ApiError::InsufficientStorage(format!(
            "the disk holding the collection is full: {what} failed ({e}); nothing was added"
        ))
    } else {
        ApiError::Internal(format!("{what}: {e}"))
    }
}

/// Stores an upload's bytes under `<collection>/uploads/<blake3>.<ext>`
/// (written to a temporary name, fsynced, renamed): the item that will
/// point at it is committed only afterwards, so a crash leaves at most an
/// unreferenced file, never an item without its image.
fn store_upload(served: &Served, bytes: &[u8], hash: &str) -> Result<std::path::PathBuf, ApiError> {
    use std::io::Write;
    let fmt = image::guess_format(bytes)
        .map(|f| f.extensions_str().first().copied().unwrap_or("img"))
        .unwrap_or("img");
    let dir = served.dir.join("uploads");
    std::fs::create_dir_all(&dir).map_err(|e| storage_error("creating the uploads folder", e))?;
    let file = dir.join(format!("{hash}.{fmt}"));
    if file.exists() {
        return Ok(file);
    }
    let tmp = dir.join(format!("{hash}.tmp"));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &file))
        .and_then(|()| std::fs::File::open(&dir)?.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(storage_error("storing the upload", e));
    }
    Ok(file)
}

fn add_upload(
    state: &AppState,
    served: &Served,
    bytes: &[u8],
    name: &str,
) -> Result<Added, ApiError> {
    let started = Instant::now();
    let hash = blake3::hash(bytes).to_hex().to_string();
    // The answer for bytes already stored (None when they are not).
    let existing = |uploads: &std::collections::HashMap<String, u64>| {
        let id = uploads
            .get(&hash)
            .copied()
            .filter(|&id| served.collection.contains(id))?;
        Some(served.collection.item(id).map(|m| Added {
            id,
            path: m.external_id,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            existing: true,
        }))
    };
    let known = existing(&served.uploads.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(added) = known {
        return Ok(added?);
    }
    let (v, _, _) = embed_image(served, bytes, name, &state.options.limits)?;
    // Only the file name the client gave, never a path.
    let shown = std::path::Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("upload")
        .to_string();
    let mut meta = imgsim_index::ItemMeta::new(format!("upload:{shown}"), SOURCE_UPLOAD);
    meta.attrs.insert(ATTR_HASH.into(), hash.clone().into());
    meta.attrs
        .insert("size".into(), (bytes.len() as u64).into());
    // Held from the check to the insert: the same bytes uploaded twice at
    // once give one item.
    let mut uploads = served.uploads.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(added) = existing(&uploads) {
        return Ok(added?);
    }
    let file = store_upload(served, bytes, &hash)?;
    meta.attrs
        .insert(ATTR_FILE.into(), file.display().to_string().into());
    let ids = served.collection.insert(vec![imgsim_index::NewItem {
        vector: v,
        meta: meta.clone(),
    }])?;
    uploads.insert(hash, ids[0]);
    Ok(Added {
        id: ids[0],
        path: meta.external_id,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        existing: false,
    })
}

/// Add an uploaded image to a collection (needs the API key). Idempotent:
/// bytes already stored answer 200 with the existing id.
#[utoipa::path(
    post,
    path = "/collections/{collection}/images",
    params(("collection" = String, Path, description = "Collection name")),
    request_body(description = "multipart/form-data with field `image`, or the raw image bytes",
        content((ImageUpload = "multipart/form-data"), (ImageBytes = "application/octet-stream"))),
    responses(
        (status = 201, description = "Added", body = Added),
        (status = 200, description = "These bytes were already stored: the existing id", body = Added),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key header", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 408, description = "The body did not arrive in time", body = ErrorResponse),
        (status = 413, description = "Too large", body = ErrorResponse), (status = 415, description = "Unsupported format", body = ErrorResponse),
        (status = 422, description = "Unusable image", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 507, description = "The disk is full: nothing was added", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn add_image(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let served = state.get(&path)?;
    let (bytes, name) = read_image(&state, &req, payload).await?;
    let st = state.clone();
    let added = offload(&state, move || add_upload(&st, &served, &bytes, &name)).await?;
    Ok(if added.existing {
        HttpResponse::Ok().json(added)
    } else {
        HttpResponse::Created().json(added)
    })
}

/// Delete an image from a collection (needs the API key).
#[utoipa::path(
    delete,
    path = "/collections/{collection}/images/{id}",
    params(("collection" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Item id")),
    responses(
        (status = 200, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key", body = ErrorResponse),
        (status = 404, description = "No such item", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 507, description = "The disk is full: nothing was deleted", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn delete_image(
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let (c, id) = path.into_inner();
    let served = state.get(&c)?;
    let n = offload(&state, move || {
        let mut uploads = served.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let hash = served
            .collection
            .item(id)
            .ok()
            .and_then(|m| m.attrs.get(ATTR_HASH)?.as_str().map(str::to_string));
        let n = served.collection.delete(&[id])?;
        if let Some(h) = hash {
            if uploads.get(&h) == Some(&id) {
                uploads.remove(&h);
            }
        }
        drop(uploads);
        let _ = std::fs::remove_file(thumb_path(&served, id));
        Ok(n)
    })
    .await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!("no image {id} in `{c}`")));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": id })))
}

/// An item's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageInfo {
    /// Id.
    pub id: u64,
    /// File path or upload name.
    pub path: String,
    /// `file` or `upload`.
    pub source: String,
    /// Added, ms since the epoch.
    pub added_unix_ms: u64,
    /// Other attributes (size, blake3, format, ...).
    #[schema(value_type = Object)]
    pub attrs: serde_json::Value,
}

fn image_info(served: &Served, id: u64) -> Result<ImageInfo, ApiError> {
    let m = served.collection.item(id)?;
    let mut attrs = serde_json::to_value(&m.attrs).unwrap_or_default();
    if let Some(o) = attrs.as_object_mut() {
        // Where uploads are stored on the server is not the client's business.
        o.remove(ATTR_FILE);
    }
    Ok(ImageInfo {
        id,
        path: m.external_id,
        source: m.source,
        added_unix_ms: m.added_unix_ms,
        attrs,
    })
}

/// An image's metadata, by id.
#[utoipa::path(
    get,
    path = "/collections/{collection}/images/{id}",
    params(("collection" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Item id")),
    responses((status = 200, body = ImageInfo), (status = 400, description = "Malformed id", body = ErrorResponse), (status = 404, description = "No such collection or item", body = ErrorResponse))
)]
pub async fn get_image(
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    let (c, id) = path.into_inner();
    let served = state.get(&c)?;
    Ok(HttpResponse::Ok().json(image_info(&served, id)?))
}

/// Paging through a collection.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items to skip (by ascending id).
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
    /// Items to return (default 50, at most 500).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<usize>,
}

/// A page of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagePage {
    /// Live items in the collection.
    pub total: usize,
    /// This page.
    pub images: Vec<ImageInfo>,
}

/// Browse a collection, by ascending id.
#[utoipa::path(
    get,
    path = "/collections/{collection}/images",
    params(("collection" = String, Path, description = "Collection name"), Page),
    responses((status = 200, body = ImagePage), (status = 400, description = "Bad offset or limit", body = ErrorResponse), (status = 404, description = "No such collection", body = ErrorResponse))
)]
pub async fn list_images(
    state: web::Data<AppState>,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let served = state.get(&path)?;
    let ids = served.collection.ids();
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(50);
    if offset > MAX_OFFSET || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "offset must be at most {MAX_OFFSET} and limit at most {MAX_PAGE}"
        )));
    }
    let images = ids
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|&id| image_info(&served, id).ok())
        .collect();
    Ok(HttpResponse::Ok().json(ImagePage {
        total: ids.len(),
        images,
    }))
}

fn thumb_path(served: &Served, id: u64) -> std::path::PathBuf {
    served.dir.join("thumbs").join(format!("{id}.jpg"))
}

/// Longest side of a thumbnail, pixels.
pub const THUMB_SIDE: u32 = 256;

fn make_thumbnail(
    served: &Served,
    id: u64,
    limits: &imgsim_embed::ImageLimits,
) -> Result<Vec<u8>, ApiError> {
    let cached = thumb_path(served, id);
    if let Ok(b) = std::fs::read(&cached) {
        return Ok(b);
    }
    let meta = served.collection.item(id)?;
    let source = match meta.attrs.get(ATTR_FILE).and_then(|v| v.as_str()) {
        Some(f) if meta.source == SOURCE_UPLOAD => std::path::PathBuf::from(f),
        _ => std::path::PathBuf::from(&meta.external_id),
    };
    let img = imgsim_embed::load_rgb_reduced(&source, limits, THUMB_SIDE).map_err(|e| {
        ApiError::NotFound(format!(
            "the image of item {id} cannot be read any more: {e}"
        ))
    })?;
    let thumb = image::imageops::thumbnail(
        &img,
        THUMB_SIDE.min(img.width()),
        ((THUMB_SIDE as f64 / img.width() as f64) * img.height() as f64)
            .round()
            .max(1.0) as u32,
    );
    let thumb = if thumb.width() > THUMB_SIDE || thumb.height() > THUMB_SIDE {
        image::imageops::thumbnail(
            &img,
            ((THUMB_SIDE as f64 / img.height() as f64) * img.width() as f64).max(1.0) as u32,
            THUMB_SIDE,
        )
    } else {
        thumb
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&thumb)
        .map_err(|e| ApiError::Internal(format!("encoding a thumbnail: {e}")))?;
    if let Some(dir) = cached.parent() {
        let tmp = dir.join(format!("{id}.tmp"));
        let stored = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, &out))
            .and_then(|()| std::fs::rename(&tmp, &cached));
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not cache a thumbnail");
        }
    }
    Ok(out)
}

/// A JPEG thumbnail (at most 256 px a side) of an image, by id; made on the
/// first request and cached.
#[utoipa::path(
    get,
    path = "/collections/{collection}/images/{id}/thumbnail",
    params(("collection" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Item id")),
    responses((status = 200, description = "image/jpeg", content_type = "image/jpeg"), (status = 400, description = "Malformed id", body = ErrorResponse), (status = 404, description = "No such item, or its file is gone", body = ErrorResponse), (status = 503, description = "Busy", body = ErrorResponse))
)]
pub async fn thumbnail(
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    let (c, id) = path.into_inner();
    let served = state.get(&c)?;
    let limits = state.options.limits;
    let bytes = offload(&state, move || make_thumbnail(&served, id, &limits)).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(bytes))
}

/// The collections served.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    /// Each collection.
    pub collections: Vec<CollectionSummary>,
}

fn summary(s: &Served) -> CollectionSummary {
    let spec = s.collection.spec();
    CollectionSummary {
        name: s.name.clone(),
        count: s.collection.len(),
        dim: spec.dim,
        metric: spec.metric.to_string(),
    }
}

/// List the collections.
#[utoipa::path(get, path = "/collections", responses((status = 200, body = CollectionList)))]
pub async fn collections(state: web::Data<AppState>) -> HttpResponse {
    let mut list: Vec<CollectionSummary> = state.collections.values().map(|s| summary(s)).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    HttpResponse::Ok().json(CollectionList { collections: list })
}

/// The live recall estimate.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecallEstimate {
    /// Mean recall@k of the sampled queries in the window (None before the first).
    pub recall_at_k: Option<f64>,
    /// Samples re-run so far.
    pub samples: u64,
    /// The window size.
    pub window: usize,
    /// The share of searches sampled.
    pub sample_rate: f64,
}

/// A collection's figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Name.
    pub name: String,
    /// Live items.
    pub count: usize,
    /// Dimension.
    pub dim: usize,
    /// `cosine` or `l2`.
    pub metric: String,
    /// The embedder record (None for vector-only collections).
    #[schema(value_type = Object)]
    pub embedder: serde_json::Value,
    /// HNSW parameters.
    #[schema(value_type = Object)]
    pub index: serde_json::Value,
    /// The ef searches use now.
    pub ef: usize,
    /// The recall the ef controller holds, if set.
    pub target_recall: Option<f64>,
    /// The live recall estimate.
    pub recall: RecallEstimate,
    /// Searches served.
    pub searches: u64,
    /// Graph segments.
    pub segments: usize,
    /// Deleted items still in a graph.
    pub tombstones: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

/// A collection's count, dimension, embedder, index parameters, ef in use
/// and live recall estimate.
#[utoipa::path(
    get,
    path = "/collections/{collection}/stats",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 200, body = Stats), (status = 404, description = "No such collection", body = ErrorResponse))
)]
pub async fn stats(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let served = state.get(&path)?;
    let st = served.collection.stats();
    let (recall, samples) = served.recall_estimate();
    Ok(HttpResponse::Ok().json(Stats {
        name: served.name.clone(),
        count: st.count,
        dim: st.dim,
        metric: st.metric.to_string(),
        embedder: serde_json::to_value(&served.record).unwrap_or_default(),
        index: serde_json::to_value(st.params).unwrap_or_default(),
        ef: served.ef.load(Ordering::Relaxed),
        target_recall: state.options.target_recall,
        recall: RecallEstimate {
            recall_at_k: recall,
            samples,
            window: state.options.recall_window,
            sample_rate: state.options.recall_sample,
        },
        searches: served.searches.load(Ordering::Relaxed),
        segments: st.segments,
        tombstones: st.tombstones,
        disk_bytes: st.disk_bytes,
    }))
}

/// Which collection's embedder `/embed` uses.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmbedParams {
    /// Collection whose embedder to use (default: the default collection).
    pub collection: Option<String>,
}

/// An embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Embedding {
    /// The vector.
    pub embedding: Vec<f32>,
    /// Its length.
    pub dim: usize,
    /// The embedder's identity (architecture, weights digest, preprocessing).
    #[schema(value_type = Object)]
    pub embedder: serde_json::Value,
    /// Milliseconds.
    pub took_ms: f64,
}

/// The embedding of an uploaded image (a collection's model as a service).
#[utoipa::path(
    post,
    path = "/embed",
    params(EmbedParams),
    request_body(description = "multipart/form-data with field `image`, or the raw image bytes",
        content((ImageUpload = "multipart/form-data"), (ImageBytes = "application/octet-stream"))),
    responses((status = 200, body = Embedding), (status = 400, description = "Malformed request", body = ErrorResponse), (status = 404, description = "No such collection", body = ErrorResponse), (status = 408, description = "The body did not arrive in time", body = ErrorResponse), (status = 413, description = "Too large", body = ErrorResponse), (status = 503, description = "Busy", body = ErrorResponse), (status = 415, description = "Unsupported", body = ErrorResponse), (status = 422, description = "Unusable image", body = ErrorResponse))
)]
pub async fn embed(
    state: web::Data<AppState>,
    params: web::Query<EmbedParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = params
        .collection
        .clone()
        .unwrap_or_else(|| state.default_collection.clone());
    let served = state.get(&name)?;
    let (bytes, name) = read_image(&state, &req, payload).await?;
    let st = state.clone();
    let out = offload(&state, move || {
        let t = Instant::now();
        let (v, _, _) = embed_image(&served, &bytes, &name, &st.options.limits)?;
        let (e, _) = served.embedder()?;
        Ok(Embedding {
            dim: v.len(),
            embedding: v,
            embedder: serde_json::to_value(e.identity()).unwrap_or_default(),
            took_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: collections open.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({ "status": "ready", "collections": state.collections.len() }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = String::new();
    out.push_str("# HELP imgsim_requests_total HTTP requests by endpoint and status.\n# TYPE imgsim_requests_total counter\n");
    for ((ep, status), n) in state
        .metrics
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        out.push_str(&format!(
            "imgsim_requests_total{{endpoint=\"{ep}\",status=\"{status}\"}} {n}\n"
        ));
    }
    let m = &state.metrics;
    out.push_str(&format!(
        "# HELP imgsim_search_seconds Time in index searches.\n# TYPE imgsim_search_seconds summary\nimgsim_search_seconds_sum {}\nimgsim_search_seconds_count {}\n",
        m.search_micros.load(Ordering::Relaxed) as f64 / 1e6,
        m.search_count.load(Ordering::Relaxed)
    ));
    out.push_str(&format!(
        "# HELP imgsim_busy_rejections_total Requests answered 503 because the queue was full.\n# TYPE imgsim_busy_rejections_total counter\nimgsim_busy_rejections_total {}\n",
        m.busy.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP imgsim_recall_estimate Live recall@k estimate from sampled queries re-run exactly.\n# TYPE imgsim_recall_estimate gauge\n");
    let mut names: Vec<&String> = state.collections.keys().collect();
    names.sort();
    for name in &names {
        if let Some(r) = state.collections[*name].recall_estimate().0 {
            out.push_str(&format!(
                "imgsim_recall_estimate{{collection=\"{name}\"}} {r}\n"
            ));
        }
    }
    out.push_str("# HELP imgsim_ef The HNSW ef in use.\n# TYPE imgsim_ef gauge\n");
    for name in &names {
        out.push_str(&format!(
            "imgsim_ef{{collection=\"{name}\"}} {}\n",
            state.collections[*name].ef.load(Ordering::Relaxed)
        ));
    }
    out.push_str(
        "# HELP imgsim_collection_items Live items.\n# TYPE imgsim_collection_items gauge\n",
    );
    for name in &names {
        out.push_str(&format!(
            "imgsim_collection_items{{collection=\"{name}\"}} {}\n",
            state.collections[*name].collection.len()
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// The JSON report of the last recall-vs-QPS benchmark (`imgsim bench ann`).
#[utoipa::path(get, path = "/benchmark", responses((status = 200, description = "The report (JSON)"), (status = 404, description = "No report", body = ErrorResponse)))]
pub async fn benchmark(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let path = state
        .options
        .bench_report
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no benchmark report configured".into()))?;
    let text = std::fs::read_to_string(path).map_err(|_| {
        ApiError::NotFound("no benchmark report yet: run `imgsim bench ann`".into())
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(text))
}
