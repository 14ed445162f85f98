//! What the request-parser fuzz targets run on one input; included, like `harness.rs`, by
//! the targets and by the corpus test CI runs (`crates/serve/tests/fuzz_corpus.rs`). Each
//! function panics only on a real defect: a parser that panics, or accepts what its limits
//! refuse.

#![allow(dead_code)]

/// A small crop and image cap, so that valid requests are short enough for the fuzzer to
/// find; the checks are the same code whatever the sizes.
const CROP: usize = 4;
const MAX_IMAGES: usize = 8;

/// A KServe v2 `/infer` body. An input starting with `B` and two bytes (a little-endian
/// length) is JSON then binary tensor data, that length given as the
/// `Inference-Header-Content-Length` header; any other input is a JSON body.
pub fn v2(data: &[u8]) {
    let (header, body) = match data {
        [b'B', a, b, rest @ ..] => (Some(u16::from_le_bytes([*a, *b]).to_string()), rest),
        _ => (None, data),
    };
    if let Ok(p) = retrain_serve::parse_v2(header.as_deref(), body, CROP, MAX_IMAGES) {
        assert!((1..=MAX_IMAGES).contains(&p.n), "{} images accepted", p.n);
        assert_eq!(p.pixels.len(), p.n * CROP * CROP * 3);
        assert!(p.pixels.len() <= body.len(), "more pixels than bytes sent");
    }
}

/// A `/v1/predict` multipart form: the input's first line is the Content-Type header (its
/// boundary), the rest the body.
pub fn multipart(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(content_type) = std::str::from_utf8(&data[..split]) else { return };
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(files) = retrain_serve::read_form(content_type.trim_end_matches('\r'), body, MAX_IMAGES) {
        assert!(files.len() <= MAX_IMAGES, "{} files accepted", files.len());
        assert!(files.iter().map(|(_, n)| n).sum::<usize>() <= body.len());
    }
}
