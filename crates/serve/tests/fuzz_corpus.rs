//! Replays every input kept under `tests/fuzz/v2` and `tests/fuzz/multipart` (seeds, and what
//! the fuzzers found) through the code the request-parser fuzz targets run
//! (`fuzz/harness_serve.rs`). Fuzzing itself runs by hand: `cargo +nightly fuzz run v2`.

#[path = "../../../fuzz/harness_serve.rs"]
mod harness_serve;

#[path = "../../../fuzz/replay.rs"]
mod replay;
use replay::replay;
use std::path::PathBuf;

#[test]
fn v2_corpus() {
    assert!(replay("v2", harness_serve::v2) >= 4);
}

#[test]
fn multipart_corpus() {
    assert!(replay("multipart", harness_serve::multipart) >= 2);
}

/// The seeds are requests the parsers accept, so the fuzzer starts from the paths that
/// matter, and the 90-byte request that once took the server down is refused.
#[test]
fn the_seeds_are_what_they_say() {
    let crop = 4;
    let json = retrain_serve::parse_v2(None, &std::fs::read(seed("v2/json-one-image")).unwrap(), crop, 8).unwrap();
    assert_eq!((json.n, json.pixels.len()), (1, 48));
    let bin = std::fs::read(seed("v2/binary-two-images")).unwrap();
    let len = u16::from_le_bytes([bin[1], bin[2]]).to_string();
    assert_eq!(retrain_serve::parse_v2(Some(&len), &bin[3..], crop, 8).unwrap().n, 2);
    let huge = std::fs::read(seed("v2/huge-shape")).unwrap();
    assert!(retrain_serve::parse_v2(None, &huge, crop, 8).is_err());
    let form = std::fs::read(seed("multipart/two-files")).unwrap();
    let cut = form.iter().position(|&b| b == b'\n').unwrap();
    let files = retrain_serve::read_form(std::str::from_utf8(&form[..cut]).unwrap(), &form[cut + 1..], 8).unwrap();
    assert_eq!(files, [("a.png".to_string(), 5), ("b.jpg".to_string(), 3)]);
}

fn seed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz").join(name)
}
