//! The routes the command line uses as a client (`routes/library.rs`):
//! writes signed with the local token, indexing confined to
//! `library_roots` and streamed as NDJSON, and answers that read back into
//! the library's types.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use actix_web::{test, web};
use imgsim_embed::Backbone;
use imgsim_pipeline::report::{CheckOutcome, CollectionInfo};
use imgsim_server::{AppState, ServerOptions};
use serde_json::{json, Value};

const TOKEN: &str = "local-token-0123";

fn write_pictures(dir: &Path, seeds: std::ops::Range<u32>) {
    std::fs::create_dir_all(dir).unwrap();
    for s in seeds {
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            let v = |k: u32| ((x * k + y * (s + 3) + s * 37) % 256) as u8;
            image::Rgb([v(s + 1), v(s * 2 + 5), v(7)])
        });
        img.save(dir.join(format!("{s}.png"))).unwrap();
    }
}

/// A data directory with collection `default` of 3 pictures.
fn data_dir(root: &Path) -> PathBuf {
    let photos = root.join("seed");
    write_pictures(&photos, 0..3);
    let data = root.join("data");
    common::index_folder(&photos, &data.join("default"), Backbone::Mobilenetv4Small);
    data
}

fn state(data: &Path, roots: Vec<PathBuf>) -> web::Data<AppState> {
    let options = ServerOptions {
        api_key: None,
        local_token: Some(TOKEN.into()),
        library_roots: roots,
        ..ServerOptions::default()
    };
    web::Data::new(AppState::open(data, "default", options).unwrap())
}

#[actix_web::test]
async fn the_local_token_signs_writes_when_no_api_key_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    let st = state(&data, vec![dir.path().to_path_buf()]);
    let app = app!(st);
    for key in [None, Some("wrong"), Some("")] {
        let mut req = test::TestRequest::post()
            .uri("/collections/default/remove")
            .set_json(json!({"items": ["0"]}));
        if let Some(k) = key {
            req = req.insert_header(("api-key", k));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{key:?}");
    }
    let req = test::TestRequest::post()
        .uri("/collections/default/remove")
        .insert_header(("api-key", TOKEN))
        .set_json(json!({"items": ["0"]}))
        .to_request();
    let v: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(
        v,
        json!({"removed": 1, "count": 2, "tombstones": v["tombstones"]})
    );
    // An unknown id or path refuses the whole removal.
    let req = test::TestRequest::post()
        .uri("/collections/default/remove")
        .insert_header(("api-key", TOKEN))
        .set_json(json!({"items": ["1", "/no/such.png"]}))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn info_and_check_answer_the_library_types() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    let st = state(&data, Vec::new());
    let app = app!(st);
    let req = test::TestRequest::get()
        .uri("/collections/default/info")
        .to_request();
    let info: CollectionInfo = test::call_and_read_body_json(&app, req).await;
    assert_eq!((info.name.as_str(), info.count), ("default", 3));
    assert!(info.embedder.is_some());
    let req = test::TestRequest::get()
        .uri("/collections/default/check?self_search=3")
        .to_request();
    let outcome: CheckOutcome = test::call_and_read_body_json(&app, req).await;
    assert!(outcome.consistent);
    assert_eq!(outcome.report.self_searched, 3);
    let req = test::TestRequest::get()
        .uri("/collections/nope/info")
        .to_request();
    assert_eq!(
        test::call_service(&app, req).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn indexing_streams_progress_and_stays_inside_the_library_roots() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path());
    let library = dir.path().join("library");
    write_pictures(&library.join("new"), 10..13);
    let outside = tempfile::tempdir().unwrap();
    write_pictures(outside.path(), 20..21);
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), library.join("new/link")).unwrap();
    let st = state(&data, vec![library.clone()]);
    let app = app!(st);
    let index = |body: Value, key: &str| {
        test::TestRequest::post()
            .uri("/collections/default/index")
            .insert_header(("api-key", key))
            .set_json(body)
            .to_request()
    };
    let new = library.join("new");
    let resp =
        test::call_service(&app, index(json!({"paths": [new], "batch_size": 2}), TOKEN)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = test::read_body(resp).await;
    let lines: Vec<Value> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["walked"]["files"], 3, "{lines:?}");
    assert_eq!(lines[1]["ready"]["count"], 3);
    assert!(
        lines.iter().any(|l| l["progress"]["done"] == 3),
        "{lines:?}"
    );
    let summary: imgsim_pipeline::Summary =
        serde_json::from_value(lines.last().unwrap()["summary"].clone()).unwrap();
    assert_eq!((summary.indexed, summary.total), (3, 6));
    // Outside the roots, directly or through `..`: 403, naming the setting.
    for p in [
        outside.path().to_path_buf(),
        library.join("../seed"),
        PathBuf::from("/"),
    ] {
        let resp = test::call_service(&app, index(json!({ "paths": [p] }), TOKEN)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{}", p.display());
        let v: Value = test::read_body_json(resp).await;
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("library_roots"), "{msg}");
    }
    // A relative path, no key, a collection the server does not hold.
    let resp = test::call_service(&app, index(json!({"paths": ["library/new"]}), TOKEN)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = test::call_service(&app, index(json!({ "paths": [new] }), "nope")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let req = test::TestRequest::post()
        .uri("/collections/other/index")
        .insert_header(("api-key", TOKEN))
        .set_json(json!({ "paths": [new] }))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v: Value = test::read_body_json(resp).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("imgsim index FOLDER --collection other"),
        "{v}"
    );
}
