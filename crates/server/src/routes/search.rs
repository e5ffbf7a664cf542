//! `POST /collections/{collection}/search`: search by uploaded image, JSON
//! vector, binary vector, indexed id or words (and words with any of
//! those), optionally only among items with a label; and
//! `POST /collections/{collection}/search/batch`: many such searches in
//! one request, answered in order. Both go through the pipeline's one
//! search routine.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use imgsim_pipeline::search::{Query, QueryEmbedder};

use crate::api::{BatchResponse, SearchParams, SearchResponse};
use crate::body::{
    batch_queries, check_vectors, read_batch, read_body, read_input, to_query, Input,
};
use crate::error::{ApiError, ErrorResponse};
use crate::offload::{offload, offload_batch};
use crate::state::{AppState, Served};

/// Search a collection by uploaded image, vector (JSON, or binary:
/// little-endian f32 as `application/x-imgsim-f32le`), indexed id, or
/// words (`text`, collections embedded with clip-b32), or words with any of
/// those; `label` keeps only items carrying that label.
#[utoipa::path(
    post,
    path = "/collections/{collection}/search",
    params(("collection" = String, Path, description = "Collection name"), SearchParams),
    request_body(description = "JSON {\"vector\": [...]}, {\"id\": N} or {\"text\": \"...\"} (text may join vector or id); or one query vector as little-endian f32 (application/x-imgsim-f32le: exactly the collection's dimension of values, parameters in the query string); or multipart/form-data with the image in field `image` (and optional fields `text`, `text_weight`, `label`); or the raw image bytes (image/jpeg, image/png, application/octet-stream, ...)",
        content((crate::api::SearchRequest = "application/json"), (crate::api::VectorBytes = "application/x-imgsim-f32le"), (crate::api::SearchForm = "multipart/form-data"), (crate::api::ImageBytes = "application/octet-stream"))),
    responses(
        (status = 200, description = "Ranked results", body = SearchResponse),
        (status = 400, description = "Malformed request (a binary vector of the wrong length, or not finite, included)", body = ErrorResponse),
        (status = 404, description = "No such collection or id", body = ErrorResponse),
        (status = 408, description = "The body did not arrive within request_timeout_s", body = ErrorResponse),
        (status = 413, description = "Body over the upload limit", body = ErrorResponse),
        (status = 415, description = "Not an image format imgsim decodes", body = ErrorResponse),
        (status = 422, description = "An image that cannot be used (damaged, too many pixels)", body = ErrorResponse),
        (status = 503, description = "Busy: too many requests wait; retry after the Retry-After seconds", body = ErrorResponse),
        (status = 504, description = "The search did not finish within request_timeout_s", body = ErrorResponse),
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
    let limit = state.options.max_upload_bytes;
    let input = read_body(&state, read_input(req.headers(), payload, limit, true)).await?;
    if let Input::Vectors(v) = &input {
        check_vectors(v, served.collection.spec().dim, &served.name, true)?;
    }
    let mut p = params.into_inner();
    let query = to_query(input, &mut p)?;
    let st = state.clone();
    let resp = offload(&state, move || answer(&st, &served, query, &p)).await?;
    Ok(HttpResponse::Ok().json(resp))
}

/// Run many searches in one request: JSON `{"searches": [...]}`, each what
/// `/search` takes as JSON, or query vectors as little-endian f32
/// (`application/x-imgsim-f32le`, n × the collection's dimension); the
/// query parameters are every search's defaults. One answer per search, in
/// order; at most `server.max_batch` searches (413 over). The searches run
/// in parallel on the worker pool, taking turns with other requests.
#[utoipa::path(
    post,
    path = "/collections/{collection}/search/batch",
    params(("collection" = String, Path, description = "Collection name"), SearchParams),
    request_body(description = "JSON {\"searches\": [{\"vector\": [...]}, {\"id\": N, \"k\": 5}, ...]}; or n query vectors as little-endian f32 (application/x-imgsim-f32le: n × the collection's dimension of values). An empty batch is answered with no results.",
        content((crate::api::BatchRequest = "application/json"), (crate::api::VectorBytes = "application/x-imgsim-f32le"))),
    responses(
        (status = 200, description = "One answer per search, in order", body = BatchResponse),
        (status = 400, description = "Malformed request; a JSON search's message starts with its place, `searches[i]: `, a binary vector's names its index", body = ErrorResponse),
        (status = 404, description = "No such collection, or a search's id is not in it", body = ErrorResponse),
        (status = 408, description = "The body did not arrive within request_timeout_s", body = ErrorResponse),
        (status = 413, description = "More searches than server.max_batch, or a body over the upload limit", body = ErrorResponse),
        (status = 415, description = "Neither JSON nor application/x-imgsim-f32le", body = ErrorResponse),
        (status = 503, description = "Busy: too many requests wait; retry after the Retry-After seconds", body = ErrorResponse),
        (status = 504, description = "The batch did not finish within request_timeout_s", body = ErrorResponse),
    )
)]
pub async fn search_batch(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<SearchParams>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let served = state.get(&path)?;
    let limit = state.options.max_upload_bytes;
    let input = read_body(&state, read_batch(req.headers(), payload, limit)).await?;
    let searches = batch_queries(
        input,
        &params.into_inner(),
        served.collection.spec().dim,
        &served.name,
        state.options.max_batch,
    )?;
    let st = state.clone();
    let results = offload_batch(&state, searches, move |i, (query, p)| {
        answer(&st, &served, query, &p).map_err(|e| e.context(&format!("searches[{i}]")))
    })
    .await?;
    Ok(HttpResponse::Ok().json(BatchResponse {
        results,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

/// Runs one search of `served` (on a worker: it blocks), counts it for the
/// live recall estimate, and makes its answer.
fn answer(
    state: &AppState,
    served: &Arc<Served>,
    query: Query,
    p: &SearchParams,
) -> Result<SearchResponse, ApiError> {
    let started = Instant::now();
    let options = p.options(served.ef.load(Ordering::Relaxed));
    let needs_embedder = query.needs_embedder();
    let run = |embedder: Option<&QueryEmbedder<'_>>| {
        imgsim_pipeline::search::run(&served.collection, embedder, query, &options)
    };
    let answer = if needs_embedder {
        served.with_embedder(&state.options.limits, |e| run(Some(e)))??
    } else {
        run(None)?
    };
    state.record_search(served, &options, &answer);
    Ok(SearchResponse::new(
        answer,
        started.elapsed().as_secs_f64() * 1e3,
    ))
}
