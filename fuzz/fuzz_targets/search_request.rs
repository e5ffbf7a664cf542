//! Search request parsing as the service does it: the query string, then
//! the body by content type (JSON, multipart, raw image bytes), under the
//! body limit. The first input byte picks the content type, the bytes up to
//! the first newline are the query string, the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 5] = [
    "application/json",
    "multipart/form-data; boundary=XyZ",
    "multipart/form-data",
    "image/png",
    "multipart/form-data; boundary=\"a b\"",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ctype = TYPES[pick as usize % TYPES.len()];
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let query = String::from_utf8_lossy(query);
    let limit = 1 << 16;
    match imgsim_server::routes::parse_search(ctype, &query, body, limit) {
        Ok((q, p)) => {
            let k = p.k.unwrap_or(10);
            assert!((1..=imgsim_server::routes::MAX_K).contains(&k));
            if let imgsim_server::routes::ParsedQuery::Image(n) = q {
                assert!(n <= limit);
            }
        }
        Err(e) => {
            // Every refusal is a client error (4xx), never a 500.
            use actix_web::ResponseError;
            assert!(e.status_code().is_client_error(), "{e:?}");
        }
    }
});
