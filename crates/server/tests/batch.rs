//! Search by binary vector (`application/x-imgsim-f32le`) and the batch
//! endpoint, against the JSON search they must agree with, on a vector-only
//! collection made by the test; and the batch's turn-taking on the pool.

#[macro_use]
mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{test, web};
use imgsim_index::{
    Collection, CollectionSpec, HnswParams, ItemMeta, Metric, NewItem, OpenOptions,
};
use imgsim_server::api::VECTORS_MEDIA_TYPE;
use imgsim_server::offload::{offload_batch, BATCH_CHUNK};
use imgsim_server::{ApiError, AppState, ServerOptions};
use serde_json::{json, Value};

use common::call;

const DIM: usize = 16;
const N: usize = 300;

/// A deterministic vector (a small LCG), components in -1..1.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..DIM)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A data dir with collection `vecs`: `N` vectors of `DIM`, L2, sealed
/// into a graph; no embedder.
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let spec = CollectionSpec {
        dim: DIM,
        metric: Metric::L2,
        params: HnswParams::default(),
    };
    let c = Collection::create(&data.join("vecs"), spec, OpenOptions::default()).unwrap();
    c.insert(
        (0..N as u64)
            .map(|i| NewItem {
                vector: vector(i),
                meta: ItemMeta::new(format!("v{i}"), "test"),
            })
            .collect(),
    )
    .unwrap();
    c.seal(&|_, _, _| {}).unwrap();
    drop(c);
    (dir, data)
}

fn options() -> ServerOptions {
    ServerOptions {
        max_batch: 40,
        ..ServerOptions::default()
    }
}

fn f32le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A binary search request to `uri`.
fn binary(uri: &str, body: Vec<u8>) -> test::TestRequest {
    test::TestRequest::post()
        .uri(uri)
        .insert_header(("content-type", VECTORS_MEDIA_TYPE))
        .set_payload(body)
}

/// What must agree between two answers: results (ids, ranks, scores,
/// paths), ef, the exact list and recall; not the timings.
fn comparable(v: &Value) -> Value {
    json!({
        "results": v["results"],
        "ef": v["ef"],
        "exact": v["exact"],
        "recall_at_k": v["recall_at_k"],
    })
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn a_binary_vector_answers_as_the_same_vector_in_json() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "vecs", options()).unwrap());
    let app = app!(state);
    for (seed, params) in [
        (7, "k=5&ef=32"),
        (1000, "k=10&with_recall=true"),
        (2001, "k=3&exact=true&with_recall=true"),
    ] {
        let q = vector(seed);
        let (s, by_json) = call(
            &app,
            test::TestRequest::post()
                .uri(&format!("/collections/vecs/search?{params}"))
                .set_json(json!({ "vector": q })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{by_json}");
        let (s, by_binary) = call(
            &app,
            binary(&format!("/collections/vecs/search?{params}"), f32le(&q)),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{by_binary}");
        assert_eq!(comparable(&by_binary), comparable(&by_json), "{params}");
        assert!(!by_binary["results"].as_array().unwrap().is_empty());
    }
    // An indexed vector, sent in binary, finds itself first.
    let (s, v) = call(
        &app,
        binary("/collections/vecs/search?k=1", f32le(&vector(42))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"][0]["path"], "v42");
    assert_eq!(v["results"][0]["score"], 0.0);
}

#[actix_web::test]
async fn binary_bodies_that_do_not_fit_are_refused_with_their_reason() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "vecs", options()).unwrap());
    let app = app!(state);
    let uri = "/collections/vecs/search";
    // One value short: names both dimensions.
    let (s, v) = call(&app, binary(uri, f32le(&vector(1)[1..]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let m = message(&v);
    assert!(
        m.contains("15 f32 values") && m.contains("dimension 16") && m.contains("64 bytes"),
        "{m}"
    );
    // Two vectors to the single endpoint: the same.
    let mut two = vector(1);
    two.extend(vector(2));
    let (s, v) = call(&app, binary(uri, f32le(&two))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("32 f32 values"), "{v}");
    // Empty.
    let (s, v) = call(&app, binary(uri, Vec::new())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("0 f32 values"), "{v}");
    // Not a whole number of f32.
    let mut odd = f32le(&vector(1));
    odd.push(0);
    let (s, v) = call(&app, binary(uri, odd)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        message(&v).contains("65 bytes, not a whole number of 4-byte f32 values"),
        "{v}"
    );
    // NaN and infinity: which component.
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut q = vector(1);
        q[3] = bad;
        let (s, v) = call(&app, binary(uri, f32le(&q))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let m = message(&v);
        assert!(
            m.contains("non-finite component at position 3") && m.contains(shown),
            "{m}"
        );
    }
    // The query parameters are checked as for JSON.
    let (s, v) = call(
        &app,
        binary("/collections/vecs/search?k=0", f32le(&vector(1))),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        message(&v).contains("k must be between 1 and 1000, not 0"),
        "{v}"
    );
    let (s, v) = call(
        &app,
        binary("/collections/vecs/search?ef=0", f32le(&vector(1))),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("ef must be between"), "{v}");
    // Vectors where an image is expected: 415.
    let (s, v) = call(&app, binary("/embed?collection=vecs", f32le(&vector(1)))).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    // Unknown collection: 404.
    let (s, _) = call(&app, binary("/collections/nope/search", f32le(&vector(1)))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn a_batch_answers_in_order_as_single_searches_do() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "vecs", options()).unwrap());
    let app = app!(state);
    let id = {
        let (s, v) = call(
            &app,
            binary("/collections/vecs/search?k=1", f32le(&vector(9))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["results"][0]["id"].as_u64().unwrap()
    };
    // 37 searches (several chunks on each worker): vectors with various
    // k, an id, exact with recall; the query string's k is the default.
    let mut searches = Vec::new();
    for i in 0..37u64 {
        searches.push(match i % 4 {
            0 => json!({ "vector": vector(500 + i) }),
            1 => json!({ "vector": vector(500 + i), "k": 1 + i as usize % 7, "ef": 20 }),
            2 => json!({ "id": id, "k": 4 }),
            _ => json!({ "vector": vector(500 + i), "exact": true, "with_recall": true }),
        });
    }
    let (s, batch) = call(
        &app,
        test::TestRequest::post()
            .uri("/collections/vecs/search/batch?k=6")
            .set_json(json!({ "searches": searches })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{batch}");
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), searches.len());
    assert!(batch["took_ms"].as_f64().unwrap() > 0.0);
    for (i, search) in searches.iter().enumerate() {
        let (s, single) = call(
            &app,
            test::TestRequest::post()
                .uri("/collections/vecs/search?k=6")
                .set_json(search),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{single}");
        assert_eq!(comparable(&results[i]), comparable(&single), "search {i}");
    }
    assert_eq!(results[0]["results"].as_array().unwrap().len(), 6);
    assert_eq!(results[1]["results"].as_array().unwrap().len(), 2);

    // The same vectors in binary, with the parameters in the query string.
    let qs: Vec<Vec<f32>> = (0..23).map(|i| vector(900 + i)).collect();
    let (s, batch) = call(
        &app,
        binary(
            "/collections/vecs/search/batch?k=4&with_recall=true",
            f32le(&qs.concat()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{batch}");
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), qs.len());
    for (i, q) in qs.iter().enumerate() {
        let (s, single) = call(
            &app,
            test::TestRequest::post()
                .uri("/collections/vecs/search?k=4&with_recall=true")
                .set_json(json!({ "vector": q })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{single}");
        assert_eq!(comparable(&results[i]), comparable(&single), "vector {i}");
    }
    // Every search of a batch counts as a search.
    let (_, st) = call(
        &app,
        test::TestRequest::get().uri("/collections/vecs/stats"),
    )
    .await;
    assert_eq!(st["searches"], 1 + 2 * 37 + 2 * 23);
}

#[actix_web::test]
async fn batches_over_the_cap_empty_or_with_a_bad_search_are_answered_clearly() {
    let (_dir, data) = data_dir();
    let state = web::Data::new(AppState::open(&data, "vecs", options()).unwrap());
    let app = app!(state);
    let uri = "/collections/vecs/search/batch";
    // Over server.max_batch (40 here): 413, JSON or binary.
    let many: Vec<Value> = (0..41).map(|i| json!({ "vector": vector(i) })).collect();
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(uri)
            .set_json(json!({ "searches": many })),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let m = message(&v);
    assert!(
        m.contains("41 searches") && m.contains("at most 40") && m.contains("server.max_batch"),
        "{m}"
    );
    let flat: Vec<f32> = (0..41).flat_map(vector).collect();
    let (s, v) = call(&app, binary(uri, f32le(&flat))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(message(&v).contains("41 searches"), "{v}");
    // At the cap: fine.
    let (s, v) = call(&app, binary(uri, f32le(&flat[..40 * DIM]))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 40);
    // Empty: no searches, no results.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(uri)
            .set_json(json!({ "searches": [] })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"], json!([]));
    let (s, v) = call(&app, binary(uri, Vec::new())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"], json!([]));
    // A bad search: the whole batch is refused, naming which.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(uri)
            .set_json(json!({ "searches": [
            { "vector": vector(1) }, { "vector": vector(2) }, { "vector": vector(3), "k": 0 }
        ] })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        message(&v),
        "searches[2]: k must be between 1 and 1000, not 0"
    );
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(uri)
            .set_json(json!({ "searches": [
            { "vector": vector(1) }, { "vector": [1.0, 2.0, 3.0] }
        ] })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        message(&v).starts_with("searches[1]: ") && message(&v).contains("expected 16"),
        "{v}"
    );
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(uri)
            .set_json(json!({ "searches": [
            { "vector": vector(1) }, { "id": 123456789 }
        ] })),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(message(&v).starts_with("searches[1]: "), "{v}");
    // Binary: a vector and a half; a NaN in the third vector.
    let (s, v) = call(&app, binary(uri, f32le(&flat[..DIM + DIM / 2]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        message(&v).contains("24 f32 values, not a whole number of vectors of dimension 16"),
        "{v}"
    );
    let mut nan = flat[..3 * DIM].to_vec();
    nan[2 * DIM + 5] = f32::NAN;
    let (s, v) = call(&app, binary(uri, f32le(&nan))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        message(&v).contains("vector 2 has a non-finite component at position 5"),
        "{v}"
    );
    // Not JSON, not vectors; no `searches`; unknown fields.
    let (s, v) = call(
        &app,
        test::TestRequest::post()
            .uri(uri)
            .insert_header(("content-type", "text/plain"))
            .set_payload("hello"),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(message(&v).contains("application/x-imgsim-f32le"), "{v}");
    for body in [json!({}), json!({ "searches": [], "k": 3 }), json!([])] {
        let (s, v) = call(&app, test::TestRequest::post().uri(uri).set_json(&body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(message(&v).starts_with("malformed JSON"), "{v}");
    }
    // Only POST.
    let (s, _) = call(&app, test::TestRequest::get().uri(uri)).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

/// Requests arriving while batches run are served between the batches'
/// chunks, not after every chunk queued before them, and batches keep
/// their turns: with one worker, requests and other batches' chunks queued
/// during a batch's first item alternate right after that first chunk.
#[actix_web::test]
async fn a_batch_takes_turns_with_requests_that_arrive_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        workers: 1,
        ..ServerOptions::default()
    };
    let state = web::Data::new(AppState::open(dir.path(), "none", opts).unwrap());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let items: Vec<usize> = (0..4 * BATCH_CHUNK).collect();
    let (st, lg) = (state.clone(), log.clone());
    let out = offload_batch(&state, items, move |i, item| {
        if i == 0 {
            // Other batches' chunks first, then requests: what arrives
            // while this batch's first chunk runs.
            for j in 1..=3 {
                let lg = lg.clone();
                st.pool
                    .spawn_batch(move || lg.lock().unwrap().push(format!("other{j}")));
            }
            for j in 1..=3 {
                let lg = lg.clone();
                st.pool
                    .spawn(move || lg.lock().unwrap().push(format!("single{j}")));
            }
        }
        lg.lock().unwrap().push(format!("b{item}"));
        Ok::<_, ApiError>(item * 10)
    })
    .await
    .unwrap();
    assert_eq!(
        out,
        (0..4 * BATCH_CHUNK).map(|i| i * 10).collect::<Vec<_>>()
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 4 * BATCH_CHUNK + 6);
    let mut want: Vec<String> = (0..BATCH_CHUNK).map(|i| format!("b{i}")).collect();
    want.extend(
        [
            "single1", "other1", "single2", "other2", "single3", "other3",
        ]
        .map(String::from),
    );
    want.extend((BATCH_CHUNK..4 * BATCH_CHUNK).map(|i| format!("b{i}")));
    assert_eq!(log, want);

    // The first failure (by index) is the answer; what follows is not run.
    let ran = Arc::new(Mutex::new(0usize));
    let r = ran.clone();
    let e = offload_batch(
        &state,
        (0..4 * BATCH_CHUNK).collect(),
        move |i, _: usize| {
            *r.lock().unwrap() += 1;
            if i == 3 {
                Err(ApiError::invalid(format!("item {i} is bad")))
            } else {
                Ok(i)
            }
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "item 3 is bad");
    assert_eq!(
        *ran.lock().unwrap(),
        BATCH_CHUNK,
        "one chunk, then it stopped"
    );
}
