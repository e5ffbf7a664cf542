//! What the service's test files share: the app under test, one call to
//! it, and indexing a folder of pictures into a new collection with a real
//! backbone and synthetic weights. (Each test file uses some of it.)
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::AtomicBool;

use actix_web::http::StatusCode;
use actix_web::test;
use imgsim_embed::{Backbone, WeightsSource};
use imgsim_pipeline::model::EmbedderChoice;
use imgsim_pipeline::store::CreateSettings;
use serde_json::Value;

/// The service (every route, the extractor error handlers) on `$state`.
macro_rules! app {
    ($state:expr) => {
        actix_web::test::init_service(
            actix_web::App::new()
                .app_data($state.clone())
                .configure(imgsim_server::extractor_errors)
                .configure(imgsim_server::configure),
        )
        .await
    };
}

/// Sends `req` to `app`: its status, and its body as JSON (`Null` when
/// the body is not JSON).
pub async fn call(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    req: test::TestRequest,
) -> (StatusCode, Value) {
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let body = test::read_body(resp).await;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, v)
}

/// Creates the collection at `collection_dir` with `backbone` (synthetic
/// weights, seed 1) and indexes the images of `photos` into it.
pub fn index_folder(
    photos: &Path,
    collection_dir: &Path,
    backbone: Backbone,
) -> imgsim_pipeline::Summary {
    let walk = imgsim_pipeline::walk(&[photos.to_path_buf()]).unwrap();
    let files: Vec<_> = walk.files.iter().map(|f| f.path.clone()).collect();
    let ready = imgsim_pipeline::ready_for_indexing(
        collection_dir,
        &EmbedderChoice::Backbone {
            backbone,
            weights: Some(WeightsSource::Synthetic { seed: 1 }),
        },
        false,
        &files,
        &CreateSettings {
            params: imgsim_index::HnswParams::default(),
            options: imgsim_index::OpenOptions::default(),
            exact_decode: false,
            train: Default::default(),
        },
        &|_| {},
    )
    .unwrap();
    imgsim_pipeline::index_files(
        &ready.collection,
        ready.embedder.as_ref(),
        walk,
        &[photos.to_path_buf()],
        &imgsim_pipeline::IndexOptions::default(),
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap()
}
