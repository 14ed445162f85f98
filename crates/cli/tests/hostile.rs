//! Folders as people really have them: links (a loop, a linked class, a dangling one),
//! copies across classes and across train/val, a decompression bomb, a header that lies,
//! a pipe, junk. The real binary on real photos must label nothing wrongly, blow up no
//! memory and lose nothing; the shared feature cache must survive damage and company.

mod common;

use common::{cache_files, mini_split, mnv2, read_json, retrain, shared, succeeds as ok, train, walk_all};
use serde_json::Value;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The `n` first photos of a hymenoptera class folder.
fn photos(class: &str, n: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared("data/hymenoptera/train").join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v.truncate(n);
    v
}

fn copy_into(files: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|f| {
            let to = dir.join(f.file_name().unwrap());
            std::fs::copy(f, &to).unwrap();
            to
        })
        .collect()
}

/// A PNG whose header says `side`×`side` grey pixels, all of them there, compressed to
/// under a megabyte: decoded, it takes `side`² bytes.
fn decompression_bomb(path: &Path, side: u32) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut e = png::Encoder::new(f, side, side);
    e.set_color(png::ColorType::Grayscale);
    e.set_depth(png::BitDepth::Eight);
    e.set_compression(png::Compression::High);
    let mut w = e.write_header().unwrap();
    let mut s = w.stream_writer().unwrap();
    let row = vec![0u8; side as usize];
    for _ in 0..side {
        std::io::Write::write_all(&mut s, &row).unwrap();
    }
    s.finish().unwrap();
}

/// A real small JPEG whose frame header claims `w`×`h`.
fn lying_jpeg(path: &Path, w: u16, h: u16) {
    let img = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([(x * 15) as u8, (y * 20) as u8, 99]));
    let mut b = std::io::Cursor::new(Vec::new());
    img.write_to(&mut b, image::ImageFormat::Jpeg).unwrap();
    let mut b = b.into_inner();
    let sof = b.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    std::fs::write(path, b).unwrap();
}

/// Peak resident memory of the largest child this process has waited for, in MB.
fn children_peak_rss_mb() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

fn paths(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_hostile_folder_is_labelled_right_and_costs_little() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    let (ants, bees) = (photos("ants", 9), photos("bees", 9));
    let tr_ants = copy_into(&ants[..6], &data.join("train/ants"));
    copy_into(&bees[..6], &data.join("train/bees"));
    let va_ants = copy_into(&ants[6..], &data.join("val/ants"));
    copy_into(&bees[6..], &data.join("val/bees"));
    // A folder of more ant photos outside, linked in on purpose: its `a/` is only linked
    // under ants, its `b/` under ants (through the whole folder) and under bees too.
    let extra = t.join("extra");
    let more_a = copy_into(&photos("ants", 12)[9..11], &extra.join("a"));
    let more_b = copy_into(&photos("ants", 12)[11..], &extra.join("b"));
    symlink(&extra, data.join("train/ants/more")).unwrap();
    symlink(extra.join("b"), data.join("train/bees/mislinked")).unwrap();
    // A loop, a dangling link, a pipe, hidden and junk files.
    symlink("..", data.join("train/ants/loop")).unwrap();
    symlink("nowhere.jpg", data.join("train/ants/gone.jpg")).unwrap();
    assert!(Command::new("mkfifo").arg(data.join("train/bees/pipe.jpg")).status().unwrap().success());
    std::fs::write(data.join("train/bees/.DS_Store"), b"finder").unwrap();
    std::fs::write(data.join("train/bees/notes.txt"), b"photos from the garden").unwrap();
    std::fs::write(data.join("train/bees/empty.jpg"), b"").unwrap();
    let png = std::fs::read(shared("images/chelsea.png")).unwrap();
    std::fs::write(data.join("train/bees/cut.png"), &png[..png.len() / 2]).unwrap();
    // Copies: an ant photo copied and hard-linked under bees; a training ant copied into val.
    std::fs::copy(&tr_ants[0], data.join("train/bees/copy.jpg")).unwrap();
    std::fs::hard_link(&tr_ants[1], data.join("train/bees/hard.jpg")).unwrap();
    std::fs::copy(&tr_ants[2], data.join("val/ants/leak.jpg")).unwrap();
    // A decompression bomb and a header that lies.
    decompression_bomb(&data.join("train/bees/bomb.png"), 30000);
    assert!(std::fs::metadata(data.join("train/bees/bomb.png")).unwrap().len() < 4 << 20);
    lying_jpeg(&data.join("train/ants/lying.jpg"), 65000, 65000);

    let (model, report) = (t.join("m.onnx"), t.join("r.json"));
    let started = Instant::now();
    let out = ok(retrain(&t.join("cache"))
        .args(["train", data.to_str().unwrap(), "--weights"])
        .arg(mnv2())
        .arg("--out")
        .arg(&model)
        .arg("--report")
        .arg(&report));
    let seconds = started.elapsed().as_secs_f64();
    let peak = children_peak_rss_mb();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("hostile train: {seconds:.1} s, peak RSS {peak:.0} MB\n{stderr}");
    assert!(peak < 1500.0, "peak RSS {peak:.0} MB");
    assert!(seconds < 60.0, "{seconds:.1} s");

    let r = read_json(&report);
    // Trained: 6 ants + the 2 photos of extra/a (linked) + 6 bees; every copy across
    // classes (copy, hard link, extra/b under both) is left out, with its original.
    // Scored: 3 + 3 val photos; the leaked copy is left out of the score.
    assert_eq!(r["train_images"], 6 - 2 + 2 + 6, "{r:#}");
    assert_eq!(r["val_images"], 6, "{r:#}");
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 3, "{conflicts:#?}");
    for c in conflicts {
        assert_eq!(paths(&c["classes"]), ["ants", "bees"]);
    }
    let in_conflict: Vec<String> = conflicts.iter().flat_map(|c| paths(&c["paths"])).collect();
    let s = |p: &Path| p.display().to_string();
    for p in [&tr_ants[0], &tr_ants[1]] {
        assert!(in_conflict.contains(&s(p)), "{p:?} not in {in_conflict:?}");
    }
    assert!(in_conflict.contains(&s(&data.join("train/bees/mislinked").join(more_b[0].file_name().unwrap()))));
    let leaks = r["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1);
    assert_eq!(paths(&leaks[0]["val"]), [s(&data.join("val/ants/leak.jpg"))]);
    assert_eq!(paths(&leaks[0]["train"]), [s(&tr_ants[2])]);
    assert_eq!(leaks[0]["class"], "ants");
    assert!(stderr.contains("3 photo(s) appear under more than one class"), "{stderr}");
    assert!(stderr.contains("1 validation photo(s) are copies of training photos"), "{stderr}");

    let skipped: Vec<(String, String)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect();
    let reason = |rel: &str| {
        let p = s(&data.join(rel));
        skipped.iter().find(|(q, _)| *q == p).map(|(_, r)| r.clone()).unwrap_or_else(|| panic!("{rel}: {skipped:#?}"))
    };
    assert!(reason("train/ants/loop").contains("loop"));
    assert!(reason("train/ants/gone.jpg").contains("broken symbolic link"));
    assert!(reason("train/bees/pipe.jpg").contains("named pipe"));
    assert!(reason("train/bees/notes.txt").contains("not an image"));
    assert!(reason("train/bees/empty.jpg").contains("empty file"));
    assert!(reason("train/bees/cut.png").contains("corrupt or truncated"));
    assert_eq!(
        reason("train/bees/bomb.png"),
        "image too large: 30000×30000 = 900.0 M pixels (limit 178956970, --max-pixels)"
    );
    assert_eq!(
        reason("train/ants/lying.jpg"),
        "image too large: 65000×65000 = 4.2 G pixels (limit 178956970, --max-pixels)"
    );
    assert_eq!(skipped.len(), 8, "{skipped:#?}");
    // Nothing was walked through the loop, and the linked photos are ants only.
    assert!(!stderr.contains("loop/"), "{stderr}");
    for p in &more_a {
        assert!(!in_conflict.iter().any(|c| c.ends_with(&*p.file_name().unwrap().to_string_lossy())));
    }

    // The model predicts; the lying header named on the command line is an error line, the
    // bomb inside a folder a warning, and neither is decoded.
    let out = retrain(&t.join("cache"))
        .arg("predict")
        .arg(&model)
        .arg(data.join("train/ants/lying.jpg"))
        .arg(&va_ants[0])
        .output()
        .unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(so.contains(&*va_ants[0].to_string_lossy()), "{so}");
    assert!(se.contains("lying.jpg: image too large: 65000×65000"), "{se}");
    let out = ok(retrain(&t.join("cache")).arg("predict").arg(&model).arg(data.join("train/bees")));
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("bomb.png: image too large"), "{se}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6 + 2 + 1, "6 bees, copy, hard, extra/b photo");

    // eval: a photo in two class folders of the test set is left out of the metrics.
    std::fs::copy(&va_ants[0], data.join("val/bees/also_an_ant.jpg")).unwrap();
    let out = ok(retrain(&t.join("cache")).args(["eval", "--format", "json"]).arg(&model).arg(&data));
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["images"], 8 - 2, "3 ants + leak.jpg + 3 bees + the copy, less both copies: {ev:#}");
    assert_eq!(ev["conflicts"].as_array().unwrap().len(), 1);
    let out =
        ok(retrain(&t.join("cache")).args(["eval", "--format", "json", "--keep-duplicates"]).arg(&model).arg(&data));
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["images"], 8);
}

#[test]
fn bad_flags_and_an_empty_model_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let flags: [(&[&str], &str); 6] = [
        (&["train", "x", "--batch", "0"], "--batch <BATCH>"),
        (&["train", "x", "--val-fraction", "1"], "must be finite, > 0 and < 1"),
        (&["train", "x", "--lr=-0.1"], "must be finite, > 0"),
        (&["train", "x", "--dropout", "1.5"], "must be finite, >= 0 and < 1"),
        (&["train", "x", "--max-pixels", "0"], "--max-pixels <MAX_PIXELS>"),
        (&["predict", "m.onnx", "x.jpg", "--top", "0"], "--top <TOP>"),
    ];
    for (args, needle) in flags {
        let out = retrain(tmp.path()).args(args).output().unwrap();
        let se = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {se}");
        assert!(se.contains(needle), "{args:?}: {se}");
    }
    let empty = tmp.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let out = retrain(tmp.path()).arg("predict").arg(&empty).arg(shared("images/dog.jpg")).output().unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("empty.onnx: not a retrain model (empty file)"), "{se}");
}

#[test]
fn damaged_cache_entries_are_recomputed_and_shared_caches_are_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = mini_split(t);
    let reference = t.join("reference.onnx");
    ok(&mut train(&t.join("none"), &data, &reference, &["--no-cache"]));
    let want = std::fs::read(&reference).unwrap();

    // Two runs at once on one empty cache: both finish, both models are the reference.
    let cache = t.join("shared-cache");
    let (a, b) = (t.join("a.onnx"), t.join("b.onnx"));
    let mut first = train(&cache, &data, &a, &[]).spawn().unwrap();
    let mut second = train(&cache, &data, &b, &[]).spawn().unwrap();
    assert!(first.wait().unwrap().success() && second.wait().unwrap().success());
    assert!(std::fs::read(&a).unwrap() == want && std::fs::read(&b).unwrap() == want);
    let entries = cache_files(&cache);
    assert_eq!(entries.len(), 48, "one entry per photo");
    // No temporary file is left behind.
    let ours = walk_all(&cache.join("retrain"));
    assert_eq!(ours.iter().filter(|p| p.extension().is_none_or(|x| x != "feat")).count(), 0, "{ours:?}");

    // Truncate one entry, flip a byte in another, empty a third: the next run recomputes
    // exactly those three and writes the same model bytes.
    let whole = std::fs::read(&entries[0]).unwrap();
    std::fs::write(&entries[0], &whole[..whole.len() / 2]).unwrap();
    let mut flipped = std::fs::read(&entries[1]).unwrap();
    flipped[100] ^= 1;
    std::fs::write(&entries[1], flipped).unwrap();
    std::fs::write(&entries[2], b"").unwrap();
    let c = t.join("c.onnx");
    let report = t.join("c.json");
    ok(&mut train(&cache, &data, &c, &["--report", report.to_str().unwrap()]));
    assert_eq!(std::fs::read(&c).unwrap(), want);
    let r = read_json(&report);
    assert_eq!((r["features_computed"].as_u64(), r["features_cached"].as_u64()), (Some(3), Some(45)));
    assert_eq!(std::fs::read(&entries[0]).unwrap(), whole, "the entry was rewritten whole");
}
