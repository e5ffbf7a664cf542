//! Search request parsing without a collection (`routes::parse_search`, the
//! function the `search_request` fuzz target drives).

use actix_web::ResponseError;
use imgsim_server::routes::{parse_search, ParsedQuery};

const LIMIT: usize = 1 << 16;

fn status(ctype: &str, query: &str, body: &[u8]) -> u16 {
    match parse_search(ctype, query, body, LIMIT) {
        Ok(_) => 200,
        Err(e) => e.status_code().as_u16(),
    }
}

#[test]
fn json_multipart_and_raw_bodies_parse_like_the_endpoint() {
    let (q, p) = parse_search(
        "application/json",
        "k=5",
        br#"{"vector": [1, 2.5, 3]}"#,
        LIMIT,
    )
    .unwrap();
    assert_eq!(q, ParsedQuery::Vector(3));
    assert_eq!(p.k, Some(5));
    // JSON fields override the query string.
    let (q, p) = parse_search(
        "application/json",
        "k=5",
        br#"{"id": 7, "k": 2, "exact": true}"#,
        LIMIT,
    )
    .unwrap();
    assert_eq!((q, p.k, p.exact), (ParsedQuery::Id(7), Some(2), Some(true)));
    let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n12345\r\n--XyZ--\r\n";
    let (q, _) = parse_search("multipart/form-data; boundary=XyZ", "", mp, LIMIT).unwrap();
    assert_eq!(q, ParsedQuery::Image(5));
    let (q, _) = parse_search("image/png", "", b"\x89PNG....", LIMIT).unwrap();
    assert_eq!(q, ParsedQuery::Image(8));
}

#[test]
fn every_bad_request_is_a_client_error() {
    let json = "application/json";
    assert_eq!(status(json, "", b"{"), 400);
    assert_eq!(status(json, "", br#"{"vector": [1], "id": 2}"#), 400);
    assert_eq!(status(json, "", br#"{}"#), 400);
    assert_eq!(status(json, "", br#"{"vector": [1], "bogus": 1}"#), 400);
    assert_eq!(status(json, "k=0", br#"{"id": 1}"#), 400);
    assert_eq!(status(json, "k=1001", br#"{"id": 1}"#), 400);
    assert_eq!(status(json, "k=-1", br#"{"id": 1}"#), 400);
    assert_eq!(status(json, "exact=maybe", br#"{"id": 1}"#), 400);
    assert_eq!(status(json, "ef=0", br#"{"id": 1}"#), 400);
    assert_eq!(status(json, "", br#"{"id": 1, "ef": 100001}"#), 400);
    assert_eq!(status(json, "ef=100000", br#"{"id": 1}"#), 200);
    assert_eq!(status(json, "", &vec![b' '; LIMIT + 1]), 413);
    assert_eq!(status("image/png", "", b""), 400);
    assert_eq!(status("image/png", "", &vec![0; LIMIT + 1]), 413);
    assert_eq!(status("multipart/form-data", "", b"--B\r\n\r\n"), 400);
    assert_eq!(
        status(
            "multipart/form-data; boundary=B",
            "",
            b"--B\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc"
        ),
        400
    );
    assert_eq!(
        status("multipart/form-data; boundary=B", "", b"--B--\r\n"),
        400
    );
    // Regression (schemathesis): fields other than `image`, before or after
    // it, were silently ignored; the form is exactly one field.
    let mp = |first: &str, second: &str| {
        format!("--B\r\nContent-Disposition: form-data; name=\"{first}\"\r\n\r\nzz\r\n--B\r\nContent-Disposition: form-data; name=\"{second}\"\r\n\r\nyy\r\n--B--\r\n")
    };
    let ct = "multipart/form-data; boundary=B";
    assert_eq!(status(ct, "", mp("other", "image").as_bytes()), 400);
    assert_eq!(status(ct, "", mp("image", "other").as_bytes()), 400);
    assert_eq!(status(ct, "", mp("image", "image").as_bytes()), 400);
}

/// Regression (found by the `search_request` fuzz target in its first 150 s,
/// 6,303 runs): actix-multipart 0.7.2 panicked ("slice index starts at 2 but
/// ends at 1", in `skip_until_boundary`) on this body, killing the worker
/// that served the request; 0.8.5 rejects it. The parse must be a 4xx.
#[test]
fn regression_a_crafted_multipart_body_does_not_panic() {
    let body = b"\x00\x00\x00\x00\x2d\x2d\x58\x79\x5a\x0d\x0a\x43\x6f\x6e\x74\x65\x6e\x74\x2d\x44\x69\x73\x70\x6f\x73\x69\x74\x69\x6f\x6e\x3a\x20\x72\x6f\x66\x6d\x2d\x64\x61\x74\x61\x3b\x20\x6e\x61\x6d\x65\x3d\x22\x69\x6d\x61\x67\x65\x22\x00\x00\x00\x00\xcc\x6f\x6e\x74\x65\x6e\x74\x2d\x44\x69\x73\x70\x6f\x73\x69\x74\x69\x6f\x6e\x3a\x20\x72\x6f\x66\x6d\x2d\x64\x61\x74\x61\x3b\x20\x6e\x00\x67\x0d\x0a\xe3\x05\x00\x00\x4e\x47\x0d\x0a\x1a\x0a\x0d\x0a\x2d\x2d\x0a\x43\x5a\x2d\x2d\x2d\x0a";
    let r = std::panic::catch_unwind(|| {
        parse_search("multipart/form-data; boundary=XyZ", "k=2", body, LIMIT)
    });
    let e = r
        .expect("the parser panicked")
        .expect_err("not a valid form");
    assert!(e.status_code().is_client_error(), "{e:?}");
}
