//! What each fuzz target runs on one input. The fuzz targets (`fuzz_targets/`, run with
//! `cargo fuzz`) and the corpus test that CI runs (`crates/retrain/tests/fuzz_corpus.rs`)
//! include this same file, so every input kept under `tests/fuzz/` is replayed exactly as
//! the fuzzer ran it. Each function panics only on a real defect.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file only this process writes, for readers that take a path.
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retrain-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::File::create(&p).and_then(|mut f| f.write_all(data)).expect("scratch file");
    p
}

/// Image decoding with pixel limits, then the preprocessing every image goes through.
/// A small limit keeps each run fast; the check is the same code whatever the limit.
pub fn decode(data: &[u8]) {
    use retrain_pixels::{Filter, Geometry, Limits, PixelError};
    let limits = Limits { max_pixels: 4_000_000, ..Limits::default() };
    let p = Path::new("fuzz.img");
    if let Ok((w, h)) = retrain_pixels::dimensions(data, p) {
        let r = retrain_pixels::decode_bytes(data, p, limits);
        if w as u64 * h as u64 > limits.max_pixels {
            assert!(matches!(r, Err(PixelError::TooLarge { .. })), "{w}×{h} not refused");
        }
    }
    let g = Geometry { resize: 40, crop: 32, filter: Filter::Bilinear };
    if let Ok(img) = retrain_pixels::decode_for(data, p, g, limits) {
        assert!(img.width() as u64 * img.height() as u64 <= limits.max_pixels);
        assert_eq!(retrain_pixels::prepare(&img, g).len(), 32 * 32 * 3);
    }
}

/// `.pth` files (zip and legacy pickle) and safetensors, through the one loader.
pub fn weights(data: &[u8]) {
    let _ = retrain_weights::allowlist::check_pth(std::io::Cursor::new(data));
    let p = scratch("w.pth", data);
    if let Ok(sd) = retrain_weights::load_state_dict(&p) {
        for (name, t) in sd {
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len(), "{name}");
        }
    }
}

/// The model-file reader: everything `Classifier::open` checks before ONNX Runtime.
pub fn model(data: &[u8]) {
    if let Ok(info) = retrain::model::inspect(data, Path::new("fuzz.onnx")) {
        assert!(info.class_names.len() >= 2);
        let _ = info.geometry();
    }
}

/// The dataset walk on a tree the input describes: folders, files (contents from a small
/// set, so copies happen), links to names in the tree (`..` and `.` included), hard links.
pub fn walk(data: &[u8]) {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    let names = ["a", "b", "c", "train", "val", "..", ".", "a/x", "b/y", "c/a"];
    let mut made: Vec<PathBuf> = vec![r.to_path_buf()];
    for op in data.chunks(3).take(40) {
        let [kind, x, y] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let parent = made[x as usize % made.len()].clone();
        let name = format!("{}{}", names[(y % 5) as usize], y / 5 % 3);
        let p = parent.join(&name);
        let ok = match kind % 5 {
            0 => std::fs::create_dir_all(&p).is_ok(),
            1 | 2 => std::fs::write(&p, [b'i', y % 4]).is_ok(),
            3 => {
                #[cfg(unix)]
                {
                    std::os::unix::fs::symlink(names[(x % names.len() as u8) as usize], &p).is_ok()
                }
                #[cfg(not(unix))]
                false
            }
            _ => {
                let from = &made[y as usize % made.len()];
                std::fs::hard_link(from, &p).is_ok()
            }
        };
        if ok {
            made.push(p);
        }
    }
    let walk = retrain_files::files_below(r);
    let mut seen = std::collections::HashSet::new();
    for f in &walk.files {
        assert!(f.starts_with(r), "{f:?} escaped the root");
        assert!(f.is_file(), "{f:?} is not a file");
        assert!(seen.insert(f.clone()), "{f:?} walked twice");
    }
    if let Ok(mut ds) = retrain_files::scan(r, None, 0.3, u64::from(data.first().copied().unwrap_or(0))) {
        ds.set_aside_duplicates(false);
        let mut by_content: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        let mut paths = std::collections::HashSet::new();
        for s in ds.train.iter().chain(&ds.val) {
            assert!(s.label < ds.class_names.len());
            assert!(paths.insert(s.path.clone()), "{:?} sampled twice", s.path);
            let content = std::fs::read(&s.path).unwrap_or_default();
            if content.is_empty() {
                continue;
            }
            let label = *by_content.entry(content).or_insert(s.label);
            assert_eq!(label, s.label, "{:?}: one photo under two labels", s.path);
        }
    }
}
