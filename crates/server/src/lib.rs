//! imgsim's HTTP service: search a collection by uploaded image, vector or
//! id, with recall against exact search per query and as a live estimate;
//! add and delete images; thumbnails; Prometheus metrics; the OpenAPI
//! document; and the web page (embedded from `web/`).
//!
//! The service only translates HTTP: what a request means is done once, in
//! the library crates (`imgsim_pipeline::search::run`, `uploads`,
//! `thumbnails`), and shared with the CLI. The files, by job:
//!
//! - `lib.rs`: the routes ([`configure`]), CORS, extractor errors, [`serve`];
//! - [`api`]: the request and response types (and their limits);
//! - [`body`]: reading request bodies (JSON, multipart, binary f32 query
//!   vectors, raw bytes) within the size limit and timeout;
//!   [`body::parse_search`];
//! - [`offload`]: the worker pool, [`offload::offload`] and
//!   [`offload::offload_batch`] (a batch's searches in chunks that take
//!   turns with requests);
//! - [`error`]: [`ApiError`] and the one mapping from an error's kind to
//!   its HTTP status;
//! - [`state`]: the collections served, options, counters, the live recall
//!   estimate and ef controller;
//! - [`routes`]: the handlers, one file per resource: `search` (and
//!   `search/batch`), `images`
//!   (list, get, add, delete, thumbnail), `service` (health, readiness,
//!   metrics, embed, benchmark, collections, stats);
//! - [`openapi`]: the OpenAPI document, from the handlers' annotations;
//! - [`watch`]: watched folders feeding a collection, and their figures.
//!
//! Blocking work (decoding, embedding, searching, sled scans, file reads)
//! runs on a bounded worker pool, never on the async executor; when too
//! many requests wait, the answer is 503 with `Retry-After`, and work that
//! outlives `request_timeout_s` is answered 504.
#![deny(missing_docs)]

pub mod api;
pub mod body;
pub mod error;
pub mod offload;
pub mod openapi;
pub mod options;
pub mod routes;
pub mod state;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;

use actix_web::dev::Service;
use actix_web::{web, App, HttpResponse, HttpServer};

pub use error::ApiError;
pub use options::ServerOptions;
pub use state::AppState;

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const APP_JS: &str = include_str!("../../../web/app.js");
const STYLE_CSS: &str = include_str!("../../../web/style.css");
const DOCS_HTML: &str = include_str!("../../../web/docs.html");

fn asset(body: &'static str, ctype: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ctype)
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// A resource whose other methods are answered 405 with `Allow: {allow}`.
pub(crate) fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, ApiError>(ApiError::MethodNotAllowed(allow))
    }))
}

/// Registers every route on an app (used by the server and by tests).
/// Unknown paths are 404; a known path with another method is 405 with
/// `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/", "GET")
            .route(web::get().to(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") })),
    )
    .service(
        resource("/app.js", "GET")
            .route(web::get().to(|| async { asset(APP_JS, "text/javascript; charset=utf-8") })),
    )
    .service(
        resource("/style.css", "GET")
            .route(web::get().to(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") })),
    )
    .service(
        resource("/docs", "GET")
            .route(web::get().to(|| async { asset(DOCS_HTML, "text/html; charset=utf-8") })),
    )
    .service(resource("/openapi.json", "GET").route(web::get().to(openapi::openapi_json)))
    .service(resource("/healthz", "GET").route(web::get().to(routes::service::healthz)))
    .service(resource("/readyz", "GET").route(web::get().to(routes::service::readyz)))
    .service(resource("/metrics", "GET").route(web::get().to(routes::service::metrics)))
    .service(resource("/benchmark", "GET").route(web::get().to(routes::service::benchmark)))
    .service(resource("/embed", "POST").route(web::post().to(routes::service::embed)))
    .service(resource("/collections", "GET").route(web::get().to(routes::service::collections)))
    .service(
        resource("/collections/{collection}/stats", "GET")
            .route(web::get().to(routes::service::stats)),
    )
    .service(
        resource("/collections/{collection}/labels", "GET")
            .route(web::get().to(routes::service::labels)),
    )
    .service(
        resource("/collections/{collection}/search", "POST")
            .route(web::post().to(routes::search::search)),
    )
    .service(
        resource("/collections/{collection}/search/batch", "POST")
            .route(web::post().to(routes::search::search_batch)),
    )
    .service(
        resource("/collections/{collection}/images", "GET, POST")
            .route(web::get().to(routes::images::list_images))
            .route(web::post().to(routes::images::add_image)),
    )
    .service(
        resource("/collections/{collection}/images/{id}", "GET, DELETE")
            .route(web::get().to(routes::images::get_image))
            .route(web::delete().to(routes::images::delete_image)),
    )
    .service(
        resource("/collections/{collection}/images/{id}/thumbnail", "GET")
            .route(web::get().to(routes::images::thumbnail)),
    )
    .configure(routes::library::configure)
    .default_service(web::to(|| async {
        Err::<HttpResponse, ApiError>(ApiError::not_found("no such endpoint (see /docs)"))
    }));
}

/// The app's error handlers for extractor failures (a bad path or query),
/// answered as JSON like every other error.
pub fn extractor_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::invalid(format!("bad path: {e}")).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::invalid(format!("bad query parameters: {e}")).into()),
    );
}

/// The CORS policy: off (no header is ever sent) unless origins are configured.
pub fn cors(origins: &[String]) -> actix_web::middleware::Condition<actix_cors::Cors> {
    let mut c = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers(["content-type", "api-key"])
        .max_age(3600);
    for o in origins {
        c = c.allowed_origin(o);
    }
    actix_web::middleware::Condition::new(!origins.is_empty(), c)
}

/// Serves `data_dir`'s collections on `bind` until stopped (Ctrl-C,
/// SIGTERM). It owns the data directory meanwhile: it holds its lock (a
/// second server on it fails, naming this one's address), and writes the
/// owner record and a fresh local token for the command line's clients
/// (see [`imgsim_pipeline::owner`]), removed again on a clean stop.
pub fn serve(
    bind: SocketAddr,
    data_dir: &Path,
    default_collection: &str,
    mut options: ServerOptions,
) -> std::io::Result<()> {
    let io_err = |e: imgsim_pipeline::PipelineError| std::io::Error::other(e.to_string());
    let _lock = imgsim_pipeline::owner::ServerLock::acquire(data_dir).map_err(io_err)?;
    let token = imgsim_pipeline::owner::new_token().map_err(io_err)?;
    options.local_token = Some(token.clone());
    let state = AppState::open(data_dir, default_collection, options)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    watch::start(&state).map_err(|e| std::io::Error::other(e.to_string()))?;
    let timeout = std::time::Duration::from_secs(state.options.request_timeout_s.max(1));
    let origins = state.options.cors_origins.clone();
    let state = web::Data::new(state);
    let names: Vec<String> = {
        let mut v: Vec<String> = state.collections.keys().cloned().collect();
        v.sort();
        v
    };
    eprintln!(
        "serving {} collection(s) [{}] on http://{bind}/ (API docs: /docs)",
        names.len(),
        names.join(", ")
    );
    let data_dir = data_dir.to_path_buf();
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let st = state.clone();
            App::new()
                .app_data(state.clone())
                .configure(extractor_errors)
                .wrap_fn(move |req, srv| {
                    let st = st.clone();
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await?;
                        let ep = res
                            .request()
                            .match_pattern()
                            .unwrap_or_else(|| "other".into());
                        st.metrics.count(&ep, res.status().as_u16());
                        Ok(res)
                    }
                })
                .configure(configure)
                .wrap(cors(&origins))
        })
        .client_request_timeout(timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(5))
        .bind(bind)?;
        let bound = server.addrs().first().copied().unwrap_or(bind);
        let record = write_owner_record(&data_dir, bound, &token).map_err(io_err)?;
        let ran = server.run().await;
        let fs = imgsim_common::LocalFs;
        if let Err(e) =
            imgsim_pipeline::owner::OwnerRecord::remove_if_owned_by(&data_dir, record.pid, &fs)
        {
            tracing::warn!(error = %e, "could not remove the owner record");
        }
        ran
    })
}

/// Writes the token file (mode 0600) and the owner record of `data_dir`
/// for a server answering on `bound`.
fn write_owner_record(
    data_dir: &Path,
    bound: SocketAddr,
    token: &str,
) -> Result<imgsim_pipeline::owner::OwnerRecord, imgsim_pipeline::PipelineError> {
    use imgsim_pipeline::owner;
    let fs = imgsim_common::LocalFs;
    let token_file = owner::write_token(data_dir, token, &fs)?;
    let record = owner::OwnerRecord {
        pid: std::process::id(),
        url: owner::url_for(bound),
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        token_file,
    };
    record.write(data_dir, &fs)?;
    Ok(record)
}
