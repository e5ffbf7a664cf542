//! Every endpoint and every error of the service, through actix-web's test
//! harness, on a small collection indexed by the test.

#[macro_use]
mod common;

use std::path::PathBuf;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use imgsim_embed::Backbone;
use imgsim_server::{AppState, ServerOptions};
use serde_json::{json, Value};

use common::call;

const KEY: &str = "test-key-123";

fn picture(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(80, 64, |x, y| {
        let v = |k: u32| ((x * k + y * (seed + 3) + seed * 37) % 256) as u8;
        image::Rgb([v(seed + 1), v(seed * 2 + 5), v(7)])
    })
}

fn png_bytes(seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    picture(seed)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A data dir with collection `default`: 4 images, MobileNetV4-small with
/// synthetic weights.
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_collection(dir.path(), &data, "default", Backbone::Mobilenetv4Small, 4);
    (dir, data)
}

/// Indexes `n` pictures into collection `name` of `data` with `backbone`
/// (synthetic weights).
fn add_collection(
    root: &std::path::Path,
    data: &std::path::Path,
    name: &str,
    backbone: Backbone,
    n: u32,
) {
    let photos = root.join(format!("photos-{name}"));
    std::fs::create_dir(&photos).unwrap();
    for i in 0..n {
        std::fs::write(photos.join(format!("{i}.png")), png_bytes(i)).unwrap();
    }
    let s = common::index_folder(&photos, &data.join(name), backbone);
    assert_eq!(s.indexed, n as usize);
}

fn options() -> ServerOptions {
    ServerOptions {
        api_key: Some(KEY.into()),
        max_upload_bytes: 200_000,
        recall_sample: 1.0,
        recall_max_per_s: 1e6,
        ..ServerOptions::default()
    }
}

fn multipart(field: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "XyZboundary42";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"q.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn path_of(v: &Value) -> &str {
    v["path"].as_str().unwrap()
}

#[actix_web::test]
async fn search_by_image_vector_and_id_with_recall() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "default", options()).unwrap());
    let app = app!(state);
    let (ctype, body) = multipart("image", &png_bytes(2));

    // Multipart upload, with recall.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search?k=3&with_recall=true")
            .insert_header(("content-type", ctype.clone()))
            .set_payload(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert!(path_of(&v["results"][0]).ends_with("/2.png"), "{v}");
    assert_eq!(v["recall_at_k"], 1.0);
    assert_eq!(v["exact"].as_array().unwrap().len(), 3);
    assert!(v["timings"]["embed_ms"].as_f64().unwrap() > 0.0);
    assert!(v["took_ms"].as_f64().unwrap() > 0.0);
    let id2 = v["results"][0]["id"].as_u64().unwrap();

    // Raw body; exact search only.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search?k=2&exact=true")
            .insert_header(("content-type", "image/png"))
            .set_payload(png_bytes(1)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(path_of(&v["results"][0]).ends_with("/1.png"), "{v}");
    assert_eq!(v["ef"], 0);

    // By id: itself left out.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .set_json(json!({"id": id2, "k": 3})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != id2));

    // By vector: the embedding of image 2 finds it.
    let (ctype2, body2) = multipart("image", &png_bytes(2));
    let (s, e) = call(
        &app,
        test::TestRequest::post()
            .uri("/embed")
            .insert_header(("content-type", ctype2))
            .set_payload(body2),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["dim"], 1280);
    assert_eq!(e["embedder"]["architecture"], "mobilenetv4-small");
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .set_json(json!({"vector": e["embedding"], "k": 1, "ef": 32})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["id"], id2);
    assert_eq!(v["ef"], 32);

    // The live estimate (every search sampled here) and /metrics.
    for _ in 0..100 {
        if state.collections["default"].recall_estimate().1 >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (s, st) = call(
        &app,
        test::TestRequest::get().uri("/collections/default/stats"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["count"], 4);
    assert_eq!(st["dim"], 1280);
    assert!(st["recall"]["samples"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(st["recall"]["recall_at_k"], 1.0);
    assert_eq!(st["ef"], 64);
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains("imgsim_recall_estimate{collection=\"default\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("imgsim_ef{collection=\"default\"} 64"),
        "{text}"
    );
}

#[actix_web::test]
async fn every_error_has_its_status() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "default", options()).unwrap());
    let app = app!(state);
    let search = |body: Value| {
        test::TestRequest::post()
            .uri("/collections/default/search")
            .set_json(body)
    };
    // 400s: malformed JSON, unknown fields, both or neither of vector/id,
    // wrong dimension, NaN cannot be sent as JSON, k out of range, bad query.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", "application/json"))
            .set_payload("{\"vector\": [1, 2"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{v}"
    );
    for (body, needle) in [
        (
            json!({"vector": [1.0], "id": 1}),
            "at most one of `vector` and `id`",
        ),
        (json!({}), "give one of `vector`, `id` or `text`"),
        (json!({"vector": [1.0, 2.0]}), "dimension"),
        (json!({"id": 0, "k": 0}), "k must be"),
        (json!({"id": 0, "k": 5000}), "k must be"),
        (json!({"id": 0, "colour": "red"}), "unknown field"),
    ] {
        let (s, v) = call(&app, search(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body} -> {v}"
        );
    }
    let (s, _) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search?k=many")
            .set_json(json!({"id": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &app,
        test::TestRequest::get().uri("/collections/default/images/abc"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", "image/png")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (ctype, body) = multipart("photo", &png_bytes(1));
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", ctype))
            .set_payload(body),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`image`"),
        "{v}"
    );

    // 404s: collection, id, route.
    let (s, _) = call(
        &app,
        search(json!({"id": 0})).uri("/collections/nope/search"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, search(json!({"id": 999}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, test::TestRequest::get().uri("/no/such/route")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["status"], 404);
    let (s, _) = call(
        &app,
        test::TestRequest::get().uri("/collections/default/images/999/thumbnail"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // 413, 415, 422.
    let (s, _) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", "image/png"))
            .set_payload(vec![0u8; 300_000]),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", "application/octet-stream"))
            .set_payload("hello, this is not an image"),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let png = png_bytes(3);
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", "image/png"))
            .set_payload(png[..png.len() / 2].to_vec()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bomb.extend_from_slice(&60_000u32.to_be_bytes());
    bomb.extend_from_slice(&60_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32fast::hash(&bomb[12..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    bomb.extend_from_slice(b"\0\0\0\x02IDAT\x78\x9c");
    let crc = crc32fast::hash(&bomb[bomb.len() - 6..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .insert_header(("content-type", "image/png"))
            .set_payload(bomb),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large"),
        "{v}"
    );
    // JSON to an endpoint that takes an image: 415.
    let (s, _) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/images")
            .insert_header(("api-key", KEY))
            .set_json(json!({"id": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // /embed's JSON is text only.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/embed")
            .set_json(json!({"id": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{v}"
    );

    // 503 with Retry-After when every slot is taken.
    let held = state.slots.clone().try_acquire_many_owned(64).unwrap();
    let resp = test::call_service(&app, search(json!({"id": 0})).to_request()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    drop(held);
    let (s, _) = call(&app, search(json!({"id": 0}))).await;
    assert_eq!(s, StatusCode::OK);
}

#[actix_web::test]
async fn uploads_deletes_metadata_thumbnails_and_the_rest() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "default", options()).unwrap());
    let app = app!(state);
    let add = |key: Option<&str>| {
        let (ctype, body) = multipart("image", &png_bytes(9));
        let mut r = test::TestRequest::post()
            .uri("/collections/default/images")
            .insert_header(("content-type", ctype))
            .set_payload(body);
        if let Some(k) = key {
            r = r.insert_header(("api-key", k));
        }
        r
    };
    let (s, _) = call(&app, add(None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, add(Some("wrong"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = call(&app, add(Some(KEY))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_u64().unwrap();
    assert_eq!(v["path"], "upload:q.png");

    // Found by a search; its metadata hides where the server keeps it.
    let (s, m) = call(
        &app,
        test::TestRequest::get().uri(&format!("/collections/default/images/{id}")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["source"], "upload");
    assert!(m["attrs"].get("file").is_none(), "{m}");
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!("/collections/default/images/{id}/thumbnail"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("content-type").unwrap(), "image/jpeg");
    let jpeg = test::read_body(resp).await;
    let thumb = image::load_from_memory(&jpeg).unwrap();
    assert!(thumb.width() <= 256 && thumb.height() <= 256);
    assert!(
        data.join(format!("default/thumbs/{id}.jpg")).exists(),
        "cached"
    );
    // A file-backed item's thumbnail too.
    let (s, _) = call(
        &app,
        test::TestRequest::get().uri("/collections/default/images/0/thumbnail"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Browse.
    let (s, p) = call(
        &app,
        test::TestRequest::get().uri("/collections/default/images?offset=1&limit=2"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["total"], 5);
    assert_eq!(p["images"].as_array().unwrap().len(), 2);

    // Delete: key needed; then gone; twice is 404.
    let del = |key: Option<&str>| {
        let mut r = test::TestRequest::delete().uri(&format!("/collections/default/images/{id}"));
        if let Some(k) = key {
            r = r.insert_header(("api-key", k));
        }
        r
    };
    let (s, _) = call(&app, del(None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, del(Some(KEY))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, del(Some(KEY))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &app,
        test::TestRequest::get().uri(&format!("/collections/default/images/{id}")),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The rest.
    let (s, v) = call(&app, test::TestRequest::get().uri("/collections")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["collections"][0]["name"], "default");
    assert_eq!(v["collections"][0]["count"], 4);
    for uri in ["/healthz", "/readyz"] {
        let (s, _) = call(&app, test::TestRequest::get().uri(uri)).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
    }
    let (s, api) = call(&app, test::TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/collections/{collection}/search",
        "/collections/{collection}/images",
        "/collections/{collection}/images/{id}",
        "/collections/{collection}/images/{id}/thumbnail",
        "/collections/{collection}/stats",
        "/collections",
        "/embed",
        "/metrics",
    ] {
        assert!(
            api["paths"].get(p).is_some(),
            "{p} missing from openapi.json"
        );
    }
    for (uri, ctype) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/docs", "text/html"),
    ] {
        let resp = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let ct = resp
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with(ctype), "{uri}: {ct}");
    }
    let (s, _) = call(&app, test::TestRequest::get().uri("/benchmark")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn the_ef_controller_moves_toward_the_target() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ef = AtomicUsize::new(64);
    assert!(imgsim_server::state::adjust_ef(&ef, 10, 0.90, 0.95));
    assert_eq!(ef.load(Ordering::Relaxed), 81);
    assert!(imgsim_server::state::adjust_ef(&ef, 10, 0.99, 0.95));
    assert_eq!(ef.load(Ordering::Relaxed), 73);
    assert!(!imgsim_server::state::adjust_ef(&ef, 10, 0.955, 0.95));
    let low = AtomicUsize::new(10);
    imgsim_server::state::adjust_ef(&low, 10, 1.0, 0.5);
    assert_eq!(low.load(Ordering::Relaxed), 10, "never below k");
}

#[actix_web::test]
async fn cors_is_off_unless_configured() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "default", options()).unwrap());
    let preflight = || {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/collections")
            .insert_header(("origin", "https://photos.example.org"))
            .insert_header(("access-control-request-method", "GET"))
            .to_request()
    };
    let get = || {
        test::TestRequest::get()
            .uri("/collections")
            .insert_header(("origin", "https://photos.example.org"))
            .to_request()
    };
    for (origins, allowed) in [
        (vec![], false),
        (vec!["https://photos.example.org".to_string()], true),
    ] {
        let app = test::init_service(
            App::new()
                .app_data(state.clone())
                .configure(imgsim_server::configure)
                .wrap(imgsim_server::cors(&origins)),
        )
        .await;
        let r = test::call_service(&app, get()).await;
        assert_eq!(
            r.headers().contains_key("access-control-allow-origin"),
            allowed,
            "{origins:?}"
        );
        let r = test::call_service(&app, preflight()).await;
        assert_eq!(
            r.headers().contains_key("access-control-allow-origin"),
            allowed,
            "{origins:?}"
        );
    }
}

/// Regression: work that outlived `request_timeout_s` was answered 503
/// "too many requests are waiting", which was not what happened; 503 is
/// for a full queue (see `every_error_has_its_status`).
#[actix_web::test]
async fn regression_work_that_outlives_the_request_timeout_is_a_504() {
    let (_dir, data) = data_dir();
    let opts = ServerOptions {
        request_timeout_s: 1,
        workers: 1,
        ..options()
    };
    let state = web::Data::new(AppState::open(&data, "default", opts).unwrap());
    let app = app!(state);
    // The only worker is busy for 3 s: the search waits, then times out.
    state
        .pool
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/search")
            .set_json(json!({"id": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!(v["error"]["status"], 504);
    assert_eq!(
        v["error"]["message"],
        "the work did not finish within 1 s (server.request_timeout_s)"
    );
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_millis(2900),
        "{waited:?}"
    );
    // Counted apart from the 503s of a full queue.
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(text.contains("imgsim_work_timeouts_total 1"), "{text}");
    assert!(text.contains("imgsim_busy_rejections_total 0"), "{text}");
    // The OpenAPI document says so.
    let (_, api) = call(&app, test::TestRequest::get().uri("/openapi.json")).await;
    let search = &api["paths"]["/collections/{collection}/search"]["post"]["responses"];
    assert!(
        search.get("504").is_some() && search.get("503").is_some(),
        "{search}"
    );
}

/// Regression: listing, stats and the benchmark report did blocking work
/// (sled scans, a directory walk, a file read) on the async executor. They
/// now run on the worker pool: with every slot taken they answer 503 like
/// every other request that needs it, and 200 once slots are free.
#[actix_web::test]
async fn regression_listing_stats_and_benchmark_run_on_the_worker_pool() {
    let (dir, data) = data_dir();
    let report = dir.path().join("bench.json");
    std::fs::write(&report, r#"{"dataset": "x", "runs": []}"#).unwrap();
    let opts = ServerOptions {
        bench_report: Some(report),
        ..options()
    };
    let state = web::Data::new(AppState::open(&data, "default", opts).unwrap());
    let app = app!(state);
    let uris = [
        "/collections/default/images?limit=2",
        "/collections/default/stats",
        "/benchmark",
    ];
    let held = state.slots.clone().try_acquire_many_owned(64).unwrap();
    for uri in uris {
        let resp = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
    }
    drop(held);
    for uri in uris {
        let (s, v) = call(&app, test::TestRequest::get().uri(uri)).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
    }
}

/// Regression: deleting an upload left its bytes under `uploads/` forever;
/// and an 80 × 64 upload got an 80 × 205 thumbnail (the width was capped,
/// the height scaled by 256 / width).
#[actix_web::test]
async fn regression_deleting_an_upload_removes_its_bytes_and_thumbnails_keep_proportions() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "default", options()).unwrap());
    let app = app!(state);
    let uploads = data.join("default/uploads");
    let stored = || -> Vec<PathBuf> {
        std::fs::read_dir(&uploads)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let (ctype, body) = multipart("image", &png_bytes(11));
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/default/images")
            .insert_header(("content-type", ctype))
            .insert_header(("api-key", KEY))
            .set_payload(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_u64().unwrap();
    assert_eq!(stored().len(), 1, "the upload's bytes are stored");
    assert!(
        data.join(format!("default/thumbs/{id}.jpg")).exists(),
        "the thumbnail is written when the upload is added"
    );
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!("/collections/default/images/{id}/thumbnail"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let thumb = image::load_from_memory(&test::read_body(resp).await).unwrap();
    assert_eq!(
        (thumb.width(), thumb.height()),
        (80, 64),
        "an 80x64 image is not enlarged or stretched"
    );
    let cached = data.join(format!("default/thumbs/{id}.jpg"));
    assert!(cached.exists());
    let (s, _) = call(
        &app,
        test::TestRequest::delete()
            .uri(&format!("/collections/default/images/{id}"))
            .insert_header(("api-key", KEY)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(stored().is_empty(), "left behind: {:?}", stored());
    assert!(!cached.exists(), "the thumbnail went too");
    // File-backed items keep their files when deleted.
    let (s, v) = call(
        &app,
        test::TestRequest::get().uri("/collections/default/images/0"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let file = PathBuf::from(v["path"].as_str().unwrap());
    let (s, _) = call(
        &app,
        test::TestRequest::delete()
            .uri("/collections/default/images/0")
            .insert_header(("api-key", KEY)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(file.exists(), "a user's file is never removed");
}

#[actix_web::test]
async fn search_by_words_image_and_words_labels_and_text_embeddings() {
    let (dir, data) = data_dir();
    add_collection(dir.path(), &data, "clip", Backbone::ClipB32, 12);
    let state = web::Data::new(AppState::open(&data, "default", options()).unwrap());
    let app = app!(state);

    // Which collections can be searched by words.
    let (s, v) = call(&app, test::TestRequest::get().uri("/collections")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text_of = |name: &str| {
        v["collections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["text"]
            .clone()
    };
    assert_eq!(
        (text_of("clip"), text_of("default")),
        (json!(true), json!(false))
    );

    // Words, with recall.
    let (s, words) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/clip/search")
            .set_json(json!({"text": "a red square", "k": 5, "with_recall": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{words}");
    assert_eq!(words["results"].as_array().unwrap().len(), 5);
    assert_eq!(words["recall_at_k"], 1.0);
    // /embed takes text; that vector finds the same images.
    let (s, e) = call(
        &app,
        test::TestRequest::post()
            .uri("/embed?collection=clip")
            .set_json(json!({"text": "a red square"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["dim"], 512);
    let (s, by_vector) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/clip/search")
            .set_json(json!({"vector": e["embedding"], "k": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{by_vector}");
    let ids = |v: &Value| -> Vec<u64> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&by_vector), ids(&words));

    // An image and words, as a form.
    let boundary = "XyZboundary42";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
    body.extend_from_slice(&png_bytes(3));
    for (k, val) in [("text", "at night"), ("text_weight", "0.25")] {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{val}"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/clip/search?k=4")
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            ))
            .set_payload(body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    assert!(v["timings"]["embed_ms"].as_f64().unwrap() > 0.0);

    // Labels: none yet; then zero-shot tags; then a filtered search.
    let (s, v) = call(
        &app,
        test::TestRequest::get().uri("/collections/clip/labels"),
    )
    .await;
    assert_eq!(
        (s, v["labels"].as_array().unwrap().len()),
        (StatusCode::OK, 0),
        "{v}"
    );
    let served = state.get("clip").unwrap();
    let opts = imgsim_pipeline::tag::TagOptions {
        top: 1,
        ..imgsim_pipeline::tag::TagOptions::new(vec!["red".into(), "green".into(), "blue".into()])
    };
    let report = served
        .with_embedder(&imgsim_embed::ImageLimits::default(), |e| {
            imgsim_pipeline::tag::tag(&served.collection, e.embedder, &opts, &|_, _| {})
        })
        .unwrap()
        .unwrap();
    assert_eq!(report.images, 12);
    let (s, v) = call(
        &app,
        test::TestRequest::get().uri("/collections/clip/labels"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let counts = v["labels"].as_array().unwrap();
    assert_eq!(
        counts
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum::<u64>(),
        12
    );
    let label = counts[0]["label"].as_str().unwrap().to_string();
    let carrying: Vec<u64> = served
        .collection
        .ids_with_label(&label)
        .unwrap()
        .iter()
        .copied()
        .collect();
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/clip/search")
            .set_json(
                json!({"text": "a red square", "k": 12, "label": label, "with_recall": true}),
            ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = ids(&v);
    assert_eq!(got.len(), carrying.len(), "{v}");
    assert!(got.iter().all(|id| carrying.contains(id)), "{v}");
    assert_eq!(v["recall_at_k"], 1.0);
    // The label as a query parameter, on a raw image body.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(&format!("/collections/clip/search?k=12&label={label}"))
            .insert_header(("content-type", "image/png"))
            .set_payload(png_bytes(5)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(ids(&v).iter().all(|id| carrying.contains(id)), "{v}");

    // Refusals, each a 400 naming the problem.
    for (uri, body, needle) in [
        (
            "/collections/default/search",
            json!({"text": "a dog"}),
            "no text tower",
        ),
        ("/collections/clip/search", json!({"text": "   "}), "empty"),
        (
            "/collections/clip/search",
            json!({"id": 1, "text_weight": 0.5}),
            "needs `text`",
        ),
        (
            "/collections/clip/search",
            json!({"id": 1, "text": "x", "text_weight": 2.0}),
            "between 0 and 1",
        ),
        (
            "/collections/clip/search",
            json!({"id": 1, "vector": [0.0]}),
            "at most one",
        ),
        (
            "/collections/clip/search",
            json!({"id": 1, "label": ""}),
            "not a label",
        ),
        ("/collections/clip/search", json!({"k": 3}), "give one of"),
    ] {
        let (s, v) = call(
            &app,
            test::TestRequest::post().uri(uri).set_json(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri("/embed")
            .set_json(json!({"text": "a dog"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("clip-b32"),
        "{v}"
    );
}
