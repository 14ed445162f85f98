//! Files, names and model files as careless users and old archives make them: a 2 GB video
//! among the photos, a PNG whose colour profile inflates to a gigabyte, Latin-1 names, tabs and
//! newlines in names, `--out` pointing at a link, a private file or a pipe, a model file with a
//! few flipped bits or a class list that does not fit its outputs.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A 64×64 grey PNG carrying an ICC profile that inflates to `inflated` bytes.
fn icc_bomb(path: &Path, inflated: usize) {
    let mut plain = Vec::new();
    image::GrayImage::from_pixel(64, 64, image::Luma([120]))
        .write_to(&mut std::io::Cursor::new(&mut plain), image::ImageFormat::Png)
        .unwrap();
    let mut data = b"bomb\0\0".to_vec();
    data.extend(miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; inflated], 9));
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let body: Vec<u8> = b"iCCP".iter().chain(&data).copied().collect();
    chunk.extend(&body);
    chunk.extend(crc32fast::hash(&body).to_be_bytes());
    // After the signature (8 bytes) and IHDR (25 bytes).
    let mut out = plain[..33].to_vec();
    out.extend(chunk);
    out.extend(&plain[33..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn big_files_and_metadata_bombs_cost_little() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 6);
    // A phone's 2 GB video, named like a photo (sparse: it takes no disk).
    let video = data.join("daisy/clip.jpg");
    std::fs::File::create(&video).unwrap().set_len(2 << 30).unwrap();
    let bomb = data.join("dandelion/profile.png");
    icc_bomb(&bomb, 1 << 30);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2 << 20);
    // Not a photo whatever its name: refused from its first bytes, not read whole.
    std::fs::write(
        data.join("sunflower/movie.png"),
        [b"\x00\x00\x00\x18ftypmp42".as_slice(), &[7u8; 3 << 20]].concat(),
    )
    .unwrap();

    let report = t.join("r.json");
    let (out, peak) = run_measured(&mut train(t, &data, &t.join("m.onnx"), &["--report", report.to_str().unwrap()]));
    let err = stderr(&out);
    eprintln!("train: peak RSS {peak:.0} MB\n{err}");
    assert!(out.status.success(), "{err}");
    // Before: the video alone cost 2.1 GB; the profile 1 GB or more.
    assert!(peak < 900.0, "peak RSS {peak:.0} MB");
    let r = read_json(&report);
    let skipped: Vec<String> =
        r["skipped"].as_array().unwrap().iter().map(|s| format!("{}: {}", s["path"], s["reason"])).collect();
    assert!(
        skipped.iter().any(|s| s.contains("clip.jpg") && s.contains("2048 MB (limit 100 MB, --max-file-size)")),
        "{skipped:#?}"
    );
    assert!(skipped.iter().any(|s| s.contains("movie.png") && s.contains("not a")), "{skipped:#?}");
    assert!(err.contains("profile.png") && err.contains("colour profile"), "{err}");
    assert_eq!(r["train_images"].as_u64().unwrap() + r["val_images"].as_u64().unwrap(), 19, "{r:#}");

    // The cap is the user's: under a smaller one, every photo is refused by name.
    let big = t.join("big.jpg");
    std::fs::write(&big, [b"\xFF\xD8\xFF".as_slice(), &vec![0u8; 3 << 20]].concat()).unwrap();
    fails(
        retrain(t).arg("predict").arg(t.join("m.onnx")).arg(&big).args(["--max-file-size", "1"]),
        "big.jpg: file too large for an image: 3 MB (limit 1 MB, --max-file-size)",
    );
}

/// `name` as raw bytes under `dir`.
fn raw(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(std::ffi::OsStr::from_bytes(name))
}

#[test]
fn any_file_name_is_written_back_unambiguously() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 6);
    let photos = walk_all(&data.join("daisy"));
    // A Latin-1 name from an old zip archive, and one with a tab and a newline.
    let latin1 = raw(&data.join("daisy"), b"caf\xe9.jpg");
    std::fs::rename(&photos[0], &latin1).unwrap();
    let odd = data.join("daisy/two\tfields\nand lines.jpg");
    std::fs::rename(&photos[1], &odd).unwrap();
    let m = t.join("m.onnx");
    let (report, page) = (t.join("r.json"), t.join("r.html"));
    let out = succeeds(&mut train(
        t,
        &data,
        &m,
        &["--report", report.to_str().unwrap(), "--html", page.to_str().unwrap(), "--val-fraction", "0.5"],
    ));
    assert!(report.exists() && page.exists(), "{}", stderr(&out));

    let json = |args: &[&std::ffi::OsStr]| -> Value {
        let out = succeeds(retrain(t).args(args));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    // predict and explain: the Latin-1 name as its bytes, the other as its text.
    let p = json(&[&os("predict"), m.as_os_str(), latin1.as_os_str(), odd.as_os_str(), &os("--format"), &os("json")]);
    let encoded = base64_of(latin1.as_os_str().as_bytes());
    assert_eq!(p["predictions"][0]["path"], serde_json::json!({ "bytes": encoded }));
    assert_eq!(p["predictions"][1]["path"], odd.to_str().unwrap());
    let e = json(&[
        &os("explain"),
        m.as_os_str(),
        latin1.as_os_str(),
        &os("--out"),
        t.join("ex").as_os_str(),
        &os("--format"),
        &os("json"),
    ]);
    assert_eq!(e[0]["path"], serde_json::json!({ "bytes": encoded }));
    // The text formats: one line per photo, its fields where they belong, names escaped.
    let out = succeeds(retrain(t).arg("predict").arg(&m).arg(&latin1).arg(&odd).args(["--top", "2"]));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(lines.iter().all(|l| l.split('\t').count() == 3), "{text:?}");
    assert!(lines[0].ends_with(".jpg") || lines[0].contains("caf\\xE9.jpg\t"), "{text:?}");
    assert!(lines[1].contains("two\\tfields\\nand lines.jpg\t"), "{text:?}");
    let out = succeeds(retrain(t).arg("predict").arg(&m).arg(&odd).args(["--format", "csv"]));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    // eval as CSV: scikit-learn's per-class table, the same figures as its JSON.
    let ev = json(&[&os("eval"), m.as_os_str(), data.as_os_str(), &os("--format"), &os("json")]);
    let csv = String::from_utf8(succeeds(retrain(t).arg("eval").arg(&m).arg(&data).args(["--format", "csv"])).stdout)
        .unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["class", "precision", "recall", "f1", "support"], "{csv}");
    assert_eq!(rows.len(), 1 + 3 + 1, "{csv}");
    for (row, c) in rows[1..4].iter().zip(ev["per_class"].as_array().unwrap()) {
        assert_eq!(row[0], c["class"]);
        let close = |s: &str, v: &Value| (s.parse::<f64>().unwrap() - v.as_f64().unwrap()).abs() < 1e-6;
        assert!(close(row[1], &c["precision"]) && close(row[2], &c["recall"]) && close(row[3], &c["f1"]), "{csv}");
        assert_eq!(row[4], c["support"].to_string());
    }
    assert_eq!(rows[4][..3], ["accuracy", "", ""]);
    assert!((rows[4][3].parse::<f64>().unwrap() - ev["accuracy"].as_f64().unwrap()).abs() < 1e-6, "{csv}");
    // Whole folders: eval, features, report, each naming the photos it read.
    for args in [
        vec![os("eval"), m.clone().into(), data.clone().into(), os("--format"), os("json")],
        vec![os("features"), data.clone().into(), os("--weights"), mnv2().into(), os("--format"), os("json")],
        vec![
            os("report"),
            m.clone().into(),
            data.clone().into(),
            os("--out"),
            t.join("p.html").into(),
            os("--format"),
            os("json"),
        ],
    ] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        json(&args);
    }
}

fn base64_of(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[test]
fn class_names_that_would_be_misread_are_refused_naming_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 4);
    std::fs::rename(data.join("daisy"), data.join("dai\nsy")).unwrap();
    fails(&mut train(t, &data, &t.join("m.onnx"), &[]), "dai\\nsy");
    std::fs::rename(data.join("dai\nsy"), raw(&data, b"d\xe4isy")).unwrap();
    fails(
        &mut train(t, &data, &t.join("m.onnx"), &[]),
        "d\\xE4isy: a class folder's name is its class name, and this one is not valid UTF-8",
    );
    assert!(!t.join("m.onnx").exists());
}

#[test]
fn out_writes_through_links_keeps_modes_and_refuses_what_is_not_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 4);
    let releases = t.join("releases");
    std::fs::create_dir(&releases).unwrap();
    let v1 = releases.join("v1.onnx");
    std::fs::write(&v1, b"old release").unwrap();
    std::fs::set_permissions(&v1, std::fs::Permissions::from_mode(0o600)).unwrap();
    let current = t.join("current.onnx");
    symlink("releases/v1.onnx", &current).unwrap();
    succeeds(&mut train(t, &data, &current, &[]));
    // The link is still a link; the release it points at is the new model, still private.
    assert!(std::fs::symlink_metadata(&current).unwrap().file_type().is_symlink());
    assert!(retrain::model::read(&v1).is_ok(), "the release was not updated");
    assert_eq!(std::fs::metadata(&v1).unwrap().permissions().mode() & 0o777, 0o600);
    // A pipe (or a device) is refused, and left as it was.
    let fifo = t.join("pipe.onnx");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fails(&mut train(t, &data, &fifo, &[]), "pipe.onnx");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn damaged_or_inconsistent_model_files_are_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 4);
    let m = t.join("m.onnx");
    succeeds(&mut train(t, &data, &m, &[]));
    let photo = walk_all(&data.join("daisy"))[0].clone();
    succeeds(retrain(t).arg("predict").arg(&m).arg(&photo));

    // Twenty flipped bits in the weights: it opened and answered before; now it is refused.
    let mut bytes = std::fs::read(&m).unwrap();
    let mid = bytes.len() / 2;
    for i in 0..20 {
        bytes[mid + i * 1000] ^= 1 << (i % 8);
    }
    let flipped = t.join("flipped.onnx");
    std::fs::write(&flipped, &bytes).unwrap();
    for cmd in ["predict", "eval"] {
        let extra = if cmd == "predict" { &photo } else { &data };
        fails(retrain(t).arg(cmd).arg(&flipped).arg(extra), "changed or damaged after it was written");
    }

    // A model from elsewhere (no checksum) whose class list does not fit its outputs.
    let mut model = retrain_onnx::read(&m).unwrap();
    model.metadata_props.retain(|p| p.key != "retrain.checksum");
    let names = model.metadata_props.iter().position(|p| p.key == "retrain.class_names").unwrap();
    let unsealed = t.join("foreign.onnx");
    for (classes, says) in [
        (r#"["daisy","dandelion"]"#, "has 3 values per image but it names 2 classes"),
        (r#"["daisy","dandelion","sunflower","rose"]"#, "has 3 values per image but it names 4 classes"),
        (r#"["daisy","daisy","sunflower"]"#, "names the class \"daisy\" twice"),
    ] {
        model.metadata_props[names].value = classes.to_string();
        std::fs::write(&unsealed, retrain_onnx::encode(&model)).unwrap();
        fails(retrain(t).arg("predict").arg(&unsealed).arg(&photo), says);
        fails(retrain(t).arg("serve").arg(&unsealed).args(["--port", "0"]), says);
    }
    // The same file with its own class list opens: a checksum is not required.
    model.metadata_props[names].value = r#"["daisy","dandelion","sunflower"]"#.to_string();
    std::fs::write(&unsealed, retrain_onnx::encode(&model)).unwrap();
    succeeds(retrain(t).arg("predict").arg(&unsealed).arg(&photo));
}

/// `dir` and every folder and file below it, read-only to everyone.
fn read_only(dir: &Path) {
    for p in walk_all(dir) {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let mut dirs: Vec<PathBuf> =
        walk_all(dir).iter().flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf)).collect();
    dirs.retain(|d| d.starts_with(dir));
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
}

#[test]
fn a_read_only_cache_is_read_and_training_computes_the_rest_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Everything the run needs sits in a folder anyone may read, so that root can run it as
    // `nobody` (to root, no file is read-only).
    std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = flowers_mini(&t.join("data"), 4);
    let weights = t.join("mnv2.pth");
    std::fs::copy(mnv2(), &weights).unwrap();
    let cache = t.join("cache");
    succeeds(&mut train(t, &data, &t.join("a.onnx"), &["--cache", cache.to_str().unwrap()]));
    let mut entries = walk_all(&cache);
    entries.sort();
    assert_eq!(entries.len(), 12);
    // A photo the cache has not seen, then the cache is made read-only (a shared mount).
    std::fs::copy(&mini_photos("daisy")[5], data.join("daisy/new.jpg")).unwrap();
    read_only(&cache);
    let bin = t.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_retrain"), bin.join("retrain")).unwrap();
    let out = t.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let mut c = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]).arg(bin.join("retrain"));
        c
    } else {
        Command::new(bin.join("retrain"))
    };
    c.env("XDG_CACHE_HOME", &out).env("HOME", &out).env("ORT_DYLIB_PATH", runtime_copy(&bin));
    c.args(["train", data.to_str().unwrap(), "--weights"]).arg(&weights).arg("--cache").arg(&cache);
    let report = out.join("r.json");
    let done = succeeds(c.arg("--out").arg(out.join("b.onnx")).arg("--report").arg(&report));
    let warnings: Vec<String> = stderr(&done).lines().filter(|l| l.contains("warning")).map(str::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("feature cache") && warnings[0].contains("new ones are not kept"), "{warnings:?}");
    let r = read_json(&report);
    assert_eq!((r["features_computed"].as_u64(), r["features_cached"].as_u64()), (Some(1), Some(12)));
    let mut after = walk_all(&cache);
    after.sort();
    assert_eq!(after, entries, "the cache is as it was");
}

/// ONNX Runtime copied into `dir`, where `nobody` can load it.
fn runtime_copy(dir: &Path) -> PathBuf {
    let lib = retrain_features::runtime_library().unwrap();
    let to = dir.join(lib.file_name().unwrap());
    std::fs::copy(&lib, &to).unwrap();
    to
}

#[test]
fn cache_entries_are_bound_to_their_image_and_killed_writers_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 4);
    let cache = t.join("cache");
    let features = || {
        let mut c = retrain(t);
        c.args(["features", data.to_str().unwrap(), "--weights"]).arg(mnv2()).arg("--cache").arg(&cache);
        let out = succeeds(c.args(["--format", "json"]));
        let m: Value = serde_json::from_slice(&out.stdout).unwrap();
        (m["computed"].as_u64().unwrap(), m["cached"].as_u64().unwrap())
    };
    assert_eq!(features(), (12, 0));
    let mut entries = walk_all(&cache);
    entries.sort();
    // One image's entry copied over another's: whole and well-formed, but not that image's.
    std::fs::copy(&entries[0], &entries[1]).unwrap();
    // What a writer killed mid-write leaves: a temporary entry; one two hours old, one fresh
    // (a live writer's, which must be left alone).
    let folder = entries[2].parent().unwrap();
    let (stale, fresh) = (folder.join(".retrain-killed.partial"), folder.join(".retrain-live.partial"));
    for p in [&stale, &fresh] {
        std::fs::write(p, b"RTF2 half").unwrap();
    }
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(hours_ago).unwrap();
    assert_eq!(features(), (1, 11), "the copied entry is recomputed, the rest read");
    assert_ne!(std::fs::read(&entries[0]).unwrap(), std::fs::read(&entries[1]).unwrap());
    assert!(!stale.exists() && fresh.exists());
    assert_eq!(features(), (0, 12));
}
