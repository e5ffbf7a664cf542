//! `POST /collections/{collection}/search`: search by uploaded image, JSON
//! vector, indexed id or words (and words with any of those), optionally
//! only among items with a label, through the pipeline's one search routine.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use imgsim_pipeline::search::QueryEmbedder;

use crate::api::{SearchParams, SearchResponse};
use crate::body::{read_body, read_input, to_query};
use crate::error::{ApiError, ErrorResponse};
use crate::offload::offload;
use crate::state::AppState;

/// Search a collection by uploaded image, JSON vector, indexed id, or
/// words (`text`, collections embedded with clip-b32), or words with any of
/// those; `label` keeps only items carrying that label.
#[utoipa::path(
    post,
    path = "/collections/{collection}/search",
    params(("collection" = String, Path, description = "Collection name"), SearchParams),
    request_body(description = "JSON {\"vector\": [...]}, {\"id\": N} or {\"text\": \"...\"} (text may join vector or id); or multipart/form-data with the image in field `image` (and optional fields `text`, `text_weight`, `label`); or the raw image bytes (image/jpeg, image/png, ...)",
        content((crate::api::SearchRequest = "application/json"), (crate::api::SearchForm = "multipart/form-data"), (crate::api::ImageBytes = "application/octet-stream"))),
    responses(
        (status = 200, description = "Ranked results", body = SearchResponse),
        (status = 400, description = "Malformed request", body = ErrorResponse),
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
    let mut p = params.into_inner();
    let query = to_query(input, &mut p)?;
    let needs_embedder = query.needs_embedder();
    let st = state.clone();
    let resp = offload(&state, move || {
        let started = Instant::now();
        let options = p.options(served.ef.load(Ordering::Relaxed));
        let run = |embedder: Option<&QueryEmbedder<'_>>| {
            imgsim_pipeline::search::run(&served.collection, embedder, query, &options)
        };
        let answer = if needs_embedder {
            served.with_embedder(&st.options.limits, |e| run(Some(e)))??
        } else {
            run(None)?
        };
        st.record_search(&served, &options, &answer);
        Ok(SearchResponse::new(
            answer,
            started.elapsed().as_secs_f64() * 1e3,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(resp))
}
