//! The collection commands of the command line, for a CLI working through
//! the service that owns the data directory: `info`, `check`, `remove`,
//! `compact`, `dups`, `tag` and `index` (the service walks and reads the
//! folders itself, only under `[server] library_roots`, and streams its
//! progress as NDJSON). Each answers the library type the CLI prints
//! offline (`imgsim_pipeline::report`, `dups`, `tag`, `Summary`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use imgsim_pipeline::dups::{DupAction, DupsRequest as Dups, Keep};
use imgsim_pipeline::report::{self, CollectionInfo};
use imgsim_pipeline::tag::TagOptions;
use imgsim_pipeline::{Failure, IndexOptions, WalkOptions};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::body::read_json;
use crate::error::{ApiError, ErrorResponse};
use crate::offload::offload;
use crate::routes::check_key;
use crate::state::{AppState, Served};

/// Largest JSON body of these endpoints (lists of paths).
const MAX_BODY: usize = 1 << 20;

/// Runs `f` on a thread of its own, without the request timeout: for work
/// that may take minutes (checking, compacting, tagging, acting on
/// duplicates), requested with the key or read-only.
async fn long_running<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("imgsim-library".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(ApiError::internal("the request's work panicked")));
            let _ = tx.send(r);
        })
        .map_err(|e| ApiError::internal(format!("cannot start a thread: {e}")))?;
    rx.await
        .map_err(|_| ApiError::internal("the worker went away"))?
}

/// A collection served under `name`, or 404 saying how to create one.
fn served(state: &AppState, name: &str) -> Result<Arc<Served>, ApiError> {
    state.collections.get(name).cloned().ok_or_else(|| {
        let mut names: Vec<&str> = state.collections.keys().map(String::as_str).collect();
        names.sort();
        ApiError::not_found(format!(
            "no collection `{name}` on this server (it serves: {}); it serves the collections \
             that existed when it started: create `{name}` with `imgsim index FOLDER --collection \
             {name}` while no server runs, then start the server again",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })
}

/// A collection's size, embedder, index parameters, disk use, labels (what
/// `imgsim info --json` prints).
#[utoipa::path(
    get,
    path = "/collections/{collection}/info",
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "The figures (imgsim_pipeline::report::CollectionInfo)", content_type = "application/json"),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
    )
)]
pub async fn info(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let s = served(&state, &path)?;
    let info = offload(&state, move || {
        Ok(CollectionInfo::gather(&s.collection, &s.name, &s.dir)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(info))
}

/// Parameters of a check.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckParams {
    /// Images searched with their own vector (default 1000; 0: structure only).
    pub self_search: Option<usize>,
}

/// Checks a collection: graphs and sled agree, nothing stored twice, every
/// image found by its own vector (what `imgsim check --json` prints).
#[utoipa::path(
    get,
    path = "/collections/{collection}/check",
    params(("collection" = String, Path, description = "Collection name"), CheckParams),
    responses(
        (status = 200, description = "The outcome (imgsim_pipeline::report::CheckOutcome)", content_type = "application/json"),
        (status = 404, description = "No such collection", body = ErrorResponse),
    )
)]
pub async fn check(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<CheckParams>,
) -> Result<HttpResponse, ApiError> {
    let s = served(&state, &path)?;
    let n = params.self_search.unwrap_or(1000);
    let outcome =
        long_running(move || Ok(report::check(&s.collection, &s.name, &s.dir, n)?)).await?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// Items to remove.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// Item ids, or paths of indexed files.
    pub items: Vec<String>,
    /// The folder relative paths are taken from (the client's working
    /// folder); default: paths are taken as given.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// Removes images by id or path (needs the API key); a name that matches
/// nothing refuses the whole removal.
#[utoipa::path(
    post,
    path = "/collections/{collection}/remove",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = RemoveRequest,
    responses(
        (status = 200, description = "Removed (imgsim_pipeline::report::Removed)", content_type = "application/json"),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key", body = ErrorResponse),
        (status = 404, description = "No such collection, id or path", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn remove(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let s = served(&state, &path)?;
    let body: RemoveRequest = read_json(payload, MAX_BODY).await?;
    let cwd = PathBuf::from(body.cwd.unwrap_or_default());
    let removed = offload(&state, move || {
        Ok(report::remove_items(&s.collection, &body.items, &cwd)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(removed))
}

/// Rebuilds a collection's graphs without deleted images (needs the API key).
#[utoipa::path(
    post,
    path = "/collections/{collection}/compact",
    params(("collection" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "Figures before and after (imgsim_pipeline::report::Compacted)", content_type = "application/json"),
        (status = 401, description = "Missing or wrong api-key", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn compact(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let s = served(&state, &path)?;
    let done = long_running(move || Ok(report::compact(&s.collection, &|_, _| {})?)).await?;
    Ok(HttpResponse::Ok().json(done))
}

/// What `dups` is asked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DupsRequest {
    /// Cosine: least similarity; L2: largest distance (default: the
    /// metric's, see the guide).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Neighbours examined per image (default 10).
    #[serde(default)]
    pub neighbours: Option<usize>,
    /// Move every copy but the original into this folder (absolute, inside
    /// `library_roots`).
    #[serde(default)]
    pub move_to: Option<String>,
    /// Delete every copy but the original.
    #[serde(default)]
    pub delete: bool,
    /// Which copy is the original: `largest` (default) or `oldest`.
    #[serde(default)]
    pub keep: Option<String>,
    /// Really act (needs the API key); without it, a plan only.
    #[serde(default)]
    pub apply: bool,
}

/// Groups of near-duplicates, and optionally moving or deleting all but
/// one of each (applying needs the API key; a folder to move to must be
/// inside `library_roots`).
#[utoipa::path(
    post,
    path = "/collections/{collection}/dups",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = DupsRequest,
    responses(
        (status = 200, description = "Groups, plan, what was done (imgsim_pipeline::dups::DupsReport)", content_type = "application/json"),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Applying without a valid api-key", body = ErrorResponse),
        (status = 403, description = "A folder outside library_roots", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
    ),
    security((), ("api_key" = []))
)]
pub async fn dups(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let s = served(&state, &path)?;
    let body: DupsRequest = read_json(payload, MAX_BODY).await?;
    if body.apply && (body.move_to.is_some() || body.delete) {
        check_key(&state, &req)?;
    }
    let action = match (&body.move_to, body.delete) {
        (Some(_), true) => {
            return Err(ApiError::invalid(
                "move_to and delete exclude each other: give one",
            ))
        }
        (Some(dir), false) => {
            let dir = Path::new(dir);
            imgsim_pipeline::roots::check_within(dir, &state.options.library_roots())?;
            Some(DupAction::MoveTo(dir.to_path_buf()))
        }
        (None, true) => Some(DupAction::Delete),
        (None, false) => None,
    };
    let keep = match body.keep.as_deref().unwrap_or("largest") {
        "largest" => Keep::Largest,
        "oldest" => Keep::Oldest,
        other => {
            return Err(ApiError::invalid(format!(
                "keep must be `largest` or `oldest`, not `{other}`"
            )))
        }
    };
    let request = Dups {
        threshold: body.threshold,
        neighbours: body.neighbours.unwrap_or(10),
        action,
        keep,
        apply: body.apply,
    };
    let report = long_running(move || {
        Ok(imgsim_pipeline::dups::find_and_act(
            &s.collection,
            &request,
            &imgsim_common::LocalFs,
        )?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// How to tag.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// The labels to choose from (at least two).
    pub labels: Vec<String>,
    /// The prompt each label is put in (`{}` stands for the label);
    /// default "a photo of a {}".
    #[serde(default)]
    pub template: Option<String>,
    /// Most labels kept per image (default 3).
    #[serde(default)]
    pub top: Option<usize>,
    /// Least probability for a label after the best one (default 0.2).
    #[serde(default)]
    pub min_score: Option<f32>,
}

/// Zero-shot labels for every image of a CLIP collection (needs the API key).
#[utoipa::path(
    post,
    path = "/collections/{collection}/tag",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = TagRequest,
    responses(
        (status = 200, description = "What was tagged (imgsim_pipeline::tag::TagReport)", content_type = "application/json"),
        (status = 400, description = "Bad labels, or a collection without a text tower", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn tag(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let s = served(&state, &path)?;
    let body: TagRequest = read_json(payload, MAX_BODY).await?;
    let mut options = TagOptions::new(body.labels);
    if let Some(t) = body.template {
        options.template = t;
    }
    if let Some(t) = body.top {
        options.top = t;
    }
    if let Some(m) = body.min_score {
        options.min_score = m;
    }
    options.validate()?;
    let report = long_running(move || {
        let (embedder, _) = s.embedder()?;
        Ok(imgsim_pipeline::tag::tag(
            &s.collection,
            embedder.as_ref(),
            &options,
            &|_, _| {},
        )?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// What to index.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexRequest {
    /// Folders and files, absolute, inside `library_roots`.
    pub paths: Vec<String>,
    /// Globs to leave out (gitignore syntax).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Also hidden files and folders.
    #[serde(default)]
    pub hidden: bool,
    /// Remove entries whose files under `paths` are gone.
    #[serde(default)]
    pub prune: bool,
    /// Images per model call and per commit (default 16).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Threads decoding (default: one per core).
    #[serde(default)]
    pub decode_threads: Option<usize>,
}

/// One line of JSON, newline-terminated.
fn line(v: serde_json::Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Indexes folders into a collection, the service walking and reading the
/// files itself (needs the API key). Every path must lie inside `[server]
/// library_roots` once canonical (403 otherwise; files reached through
/// symlinks pointing outside are reported failed). Answers a stream of
/// NDJSON lines: `{"walked": {"files", "failures", "seconds"}}`, `{"ready":
/// {"name", "path", "count", "embedder"}}`, one `{"progress": {"done",
/// "total", "indexed", "failed"}}` per committed batch, then `{"summary":
/// Summary}` (what `imgsim index --json` prints) or `{"error": {"status",
/// "message"}}`. A client that disconnects stops the run after the batch in
/// flight (committed batches stay). Runs one at a time per collection.
#[utoipa::path(
    post,
    path = "/collections/{collection}/index",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = IndexRequest,
    responses(
        (status = 200, description = "NDJSON progress lines, then the summary or an error", content_type = "application/x-ndjson"),
        (status = 400, description = "Malformed request, a relative path", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key", body = ErrorResponse),
        (status = 403, description = "A path outside library_roots", body = ErrorResponse),
        (status = 404, description = "No such collection (create it first), or a path that does not exist", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn index(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let s = served(&state, &path)?;
    let body: IndexRequest = read_json(payload, MAX_BODY).await?;
    if body.paths.is_empty() {
        return Err(ApiError::invalid("paths: give at least one folder or file"));
    }
    let roots = state.options.library_roots();
    let mut paths = Vec::new();
    for p in &body.paths {
        let p = PathBuf::from(p);
        if !p.is_absolute() {
            return Err(ApiError::invalid(format!(
                "{}: give absolute paths (the server's working folder is not yours)",
                p.display()
            )));
        }
        if !p.exists() {
            return Err(ApiError::not_found(format!(
                "{}: no such file or folder on the server's machine",
                p.display()
            )));
        }
        imgsim_pipeline::roots::check_within(&p, &roots)?;
        paths.push(p);
    }
    let walk_opts = WalkOptions {
        hidden: body.hidden,
        exclude: body.exclude,
    };
    let Some(record) = &s.record else {
        return Err(ApiError::invalid(format!(
            "collection `{}` records no image embedder: images cannot be indexed into it",
            s.name
        )));
    };
    let exact_decode = record.exact_decode;
    let options = IndexOptions {
        batch_size: body.batch_size.unwrap_or(16).max(1),
        decode_threads: body.decode_threads.unwrap_or(0),
        limits: state.options.limits,
        exact_decode,
        prune: body.prune,
        thumbnails: Some(imgsim_common::local()),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    std::thread::Builder::new()
        .name("imgsim-index".into())
        .spawn(move || run_index(&s, &paths, &walk_opts, &roots, &options, &tx))
        .map_err(|e| ApiError::internal(format!("cannot start the indexing thread: {e}")))?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, actix_web::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(stream))
}

/// The indexing thread: walks, indexes with [`Served::index_files`] and
/// sends the NDJSON lines; a failed send (the client went away) cancels.
fn run_index(
    s: &Served,
    paths: &[PathBuf],
    walk_opts: &WalkOptions,
    roots: &[PathBuf],
    options: &IndexOptions,
    tx: &tokio::sync::mpsc::UnboundedSender<Bytes>,
) {
    let cancel = AtomicBool::new(false);
    let send = |v: serde_json::Value| {
        if tx.send(line(v)).is_err() {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let fail = |e: ApiError| {
        send(
            serde_json::json!({"error": {"status": e.status().as_u16(), "message": e.to_string()}}),
        )
    };
    let started = Instant::now();
    let mut walk = match imgsim_pipeline::walk_with(paths, walk_opts) {
        Ok(w) => w,
        Err(e) => return fail(e.into()),
    };
    // A symlink under a root may lead outside it: such files are not read.
    let (inside, outside): (Vec<_>, Vec<_>) = walk
        .files
        .into_iter()
        .partition(|f| imgsim_pipeline::roots::check_within(&f.path, roots).is_ok());
    walk.files = inside;
    walk.failures.extend(outside.into_iter().map(|f| Failure {
        error: "leads outside [server] library_roots (a symlink): not read".into(),
        path: f.path,
    }));
    send(serde_json::json!({"walked": {
        "files": walk.files.len(),
        "failures": walk.failures.len(),
        "seconds": started.elapsed().as_secs_f64(),
    }}));
    send(serde_json::json!({"ready": {
        "name": s.name,
        "path": s.dir,
        "count": s.collection.len(),
        "embedder": s.record.as_ref().map(|r| r.describe()),
    }}));
    let progress = |p: &imgsim_pipeline::IndexProgress| send(serde_json::json!({ "progress": p }));
    match s.index_files(walk, paths, options, &cancel, &progress) {
        Ok(summary) => send(serde_json::json!({ "summary": summary })),
        Err(e) => fail(e),
    }
}

/// Registers these routes (called by [`crate::configure`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::resource;
    cfg.service(resource("/collections/{collection}/info", "GET").route(web::get().to(info)))
        .service(resource("/collections/{collection}/check", "GET").route(web::get().to(check)))
        .service(resource("/collections/{collection}/remove", "POST").route(web::post().to(remove)))
        .service(
            resource("/collections/{collection}/compact", "POST").route(web::post().to(compact)),
        )
        .service(resource("/collections/{collection}/dups", "POST").route(web::post().to(dups)))
        .service(resource("/collections/{collection}/tag", "POST").route(web::post().to(tag)))
        .service(resource("/collections/{collection}/index", "POST").route(web::post().to(index)));
}
