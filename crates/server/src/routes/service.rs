//! The service's own endpoints: health, readiness, Prometheus metrics, the
//! model as a service (`/embed`), the benchmark report, and the
//! collections with their figures.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::{
    CollectionList, CollectionSummary, EmbedParams, Embedding, LabelCount, LabelList,
    RecallEstimate, Stats, TextInput,
};
use crate::body::{is_json, read_body, read_image, read_json};
use crate::error::{ApiError, ErrorResponse};
use crate::offload::offload;
use crate::state::{AppState, Served};

fn summary(s: &Served) -> CollectionSummary {
    let spec = s.collection.spec();
    CollectionSummary {
        name: s.name.clone(),
        count: s.collection.len(),
        dim: spec.dim,
        metric: spec.metric.to_string(),
        text: s.record.as_ref().is_some_and(|r| r.has_text()),
    }
}

/// List the collections.
#[utoipa::path(get, path = "/collections", responses((status = 200, body = CollectionList)))]
pub async fn collections(state: web::Data<AppState>) -> HttpResponse {
    let mut list: Vec<CollectionSummary> = state.collections.values().map(|s| summary(s)).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    HttpResponse::Ok().json(CollectionList { collections: list })
}

/// A collection's count, dimension, metric, embedder, index parameters,
/// ef in use and live recall estimate.
#[utoipa::path(
    get,
    path = "/collections/{collection}/stats",
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, body = Stats),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 504, description = "The figures were not gathered within request_timeout_s", body = ErrorResponse),
    )
)]
pub async fn stats(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let served = state.get(&path)?;
    let st = state.clone();
    // The disk usage walks the collection's files: on the pool.
    let stats = offload(&state, move || {
        let figures = served.collection.stats();
        let (recall, samples) = served.recall_estimate();
        Ok(Stats {
            name: served.name.clone(),
            count: figures.count,
            dim: figures.dim,
            metric: figures.metric.to_string(),
            embedder: serde_json::to_value(&served.record).unwrap_or_default(),
            index: serde_json::to_value(figures.params).unwrap_or_default(),
            ef: served.ef.load(Ordering::Relaxed),
            target_recall: st.options.target_recall,
            recall: RecallEstimate {
                recall_at_k: recall,
                samples,
                window: st.options.recall_window,
                sample_rate: st.options.recall_sample,
            },
            searches: served.searches.load(Ordering::Relaxed),
            segments: figures.segments,
            tombstones: figures.tombstones,
            disk_bytes: figures.disk_bytes,
            memory_bytes: figures.memory_bytes as u64,
            memory_bytes_per_vector: figures.memory_bytes_per_vector,
            mapped_bytes: figures.mapped_bytes,
            appendable: figures.appendable_rows,
            maintenance: served.maintainer.status(),
            watch: st
                .watchers
                .stats(&served.name)
                .and_then(|w| serde_json::to_value(w).ok()),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(stats))
}

/// The embedding of an uploaded image, or of text (JSON `{"text": ...}`,
/// collections embedded with clip-b32): a collection's model as a service.
#[utoipa::path(
    post,
    path = "/embed",
    params(EmbedParams),
    request_body(description = "multipart/form-data with field `image`, the raw image bytes, or JSON {\"text\": \"...\"}",
        content((crate::api::ImageUpload = "multipart/form-data"), (crate::api::ImageBytes = "application/octet-stream"), (crate::api::TextInput = "application/json"))),
    responses((status = 200, body = Embedding), (status = 400, description = "Malformed request", body = ErrorResponse), (status = 404, description = "No such collection", body = ErrorResponse), (status = 408, description = "The body did not arrive in time", body = ErrorResponse), (status = 413, description = "Too large", body = ErrorResponse), (status = 503, description = "Busy", body = ErrorResponse), (status = 504, description = "The embedding did not finish within request_timeout_s", body = ErrorResponse), (status = 415, description = "Unsupported", body = ErrorResponse), (status = 422, description = "Unusable image", body = ErrorResponse))
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
    /// What to embed.
    enum Input {
        Text(String),
        Image(Vec<u8>, String),
    }
    let input = if is_json(&req) {
        let limit = imgsim_embed::text::MAX_TEXT_BYTES + 1024;
        Input::Text(
            read_body(&state, read_json::<TextInput>(payload, limit))
                .await?
                .text,
        )
    } else {
        let (bytes, name) = read_image(&state, &req, payload).await?;
        Input::Image(bytes, name)
    };
    let st = state.clone();
    let out = offload(&state, move || {
        let t = Instant::now();
        let (vector, identity) = served.with_embedder(&st.options.limits, |e| {
            let v = match &input {
                Input::Text(text) => imgsim_pipeline::search::embed_text(e, text),
                Input::Image(bytes, name) => imgsim_pipeline::search::embed_bytes(
                    e.embedder,
                    e.record,
                    bytes,
                    std::path::Path::new(name),
                    e.limits,
                ),
            };
            v.map(|v| {
                (
                    v,
                    serde_json::to_value(e.embedder.identity()).unwrap_or_default(),
                )
            })
        })??;
        Ok(Embedding {
            dim: vector.len(),
            embedding: vector,
            embedder: identity,
            took_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

/// The labels in use in a collection (zero-shot tags from `imgsim tag`),
/// with the number of images carrying each, most frequent first.
#[utoipa::path(
    get,
    path = "/collections/{collection}/labels",
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, body = LabelList),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 504, description = "The labels were not gathered within request_timeout_s", body = ErrorResponse),
    )
)]
pub async fn labels(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let served = state.get(&path)?;
    // The first call scans the item records: on the pool.
    let list = offload(&state, move || {
        Ok(LabelList {
            labels: served
                .collection
                .label_counts()?
                .into_iter()
                .map(|(label, count)| LabelCount { label, count })
                .collect(),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(list))
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
    out.push_str(&format!(
        "# HELP imgsim_work_timeouts_total Requests answered 504 because their work outlived request_timeout_s.\n# TYPE imgsim_work_timeouts_total counter\nimgsim_work_timeouts_total {}\n",
        m.timeouts.load(Ordering::Relaxed)
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
    out.push_str("# HELP imgsim_maintenance_runs_total Seals and compactions committed in the background.\n# TYPE imgsim_maintenance_runs_total counter\n");
    for name in &names {
        let m = state.collections[*name].maintainer.status();
        out.push_str(&format!(
            "imgsim_maintenance_runs_total{{collection=\"{name}\"}} {}\nimgsim_maintenance_failures_total{{collection=\"{name}\"}} {}\nimgsim_maintenance_running{{collection=\"{name}\"}} {}\n",
            m.runs,
            m.failures,
            u8::from(m.running)
        ));
    }
    out.push_str(&state.watchers.metrics());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// The JSON report of the last recall-vs-QPS benchmark (`imgsim bench ann`).
#[utoipa::path(get, path = "/benchmark", responses(
    (status = 200, description = "The report (JSON)"),
    (status = 404, description = "No report", body = ErrorResponse),
    (status = 503, description = "Busy", body = ErrorResponse),
    (status = 504, description = "The report was not read within request_timeout_s", body = ErrorResponse),
))]
pub async fn benchmark(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let path = state
        .options
        .bench_report
        .clone()
        .ok_or_else(|| ApiError::not_found("no benchmark report configured"))?;
    // A file read: on the pool.
    let text = offload(&state, move || {
        std::fs::read_to_string(&path)
            .map_err(|_| ApiError::not_found("no benchmark report yet: run `imgsim bench ann`"))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(text))
}
