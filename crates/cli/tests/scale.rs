//! Scale-out end to end: `retrain features --shard K/N` on one cache, then `train --cache`.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

fn features(home: &Path, data: &Path, cache: &Path, extra: &[&str]) -> Command {
    let mut c = retrain(home);
    c.args(["features", data.to_str().unwrap(), "--quiet", "--format", "json", "--weights"])
        .arg(mnv2())
        .arg("--cache")
        .arg(cache)
        .args(extra);
    c
}

fn manifest(cmd: &mut Command) -> Value {
    serde_json::from_slice(&succeeds(cmd).stdout).expect("the manifest is JSON")
}

fn shard(home: &Path, data: &Path, cache: &Path, k: u32, n: u32, extra: &[&str]) -> Value {
    let s = format!("{k}/{n}");
    manifest(&mut features(home, data, cache, &[&["--shard", s.as_str()], extra].concat()))
}

/// Trains with `train` and returns its report.
fn train_report(home: &Path, data: &Path, out: &Path, extra: &[&str]) -> Value {
    let report = out.with_extension("json");
    succeeds(train(home, data, out, extra).arg("--report").arg(&report));
    read_json(&report)
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn shards_cover_everything_once_and_train_from_them_writes_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 12);
    let cache = t.join("shared-cache");

    // Four shards, run as four machines would (other thread and batch settings than train's).
    let first: Vec<Value> =
        (0..4).map(|k| shard(t, &data, &cache, k, 4, &["--threads", "1", "--batch", "5"])).collect();
    let files: Vec<u64> = first.iter().map(|m| n(m, "files")).collect();
    assert!(first.iter().all(|m| n(m, "dataset_files") == 36), "{first:?}");
    assert_eq!(files.iter().sum::<u64>(), 36, "the shards cover the 36 photos: {files:?}");
    assert_eq!(first.iter().map(|m| n(m, "computed")).sum::<u64>(), 36, "each computed once");
    assert_eq!(cache_files(&cache).len(), 36, "one entry per photo, none twice");
    assert!(files.iter().all(|&f| f > 0), "36 photos over 4 shards: none empty ({files:?})");
    assert_eq!(first[2]["shard"], "2/4");

    // New photos: every shard keeps its old ones (cached) and computes only its new ones.
    flowers_mini(&data, 16);
    let second: Vec<Value> = (0..4).map(|k| shard(t, &data, &cache, k, 4, &[])).collect();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(n(b, "cached"), n(a, "files"), "a shard's old files stay in it: {a} {b}");
        assert_eq!(n(b, "files"), n(b, "cached") + n(b, "computed"));
    }
    assert_eq!(second.iter().map(|m| n(m, "computed")).sum::<u64>(), 12, "only the 12 new photos");
    assert_eq!(cache_files(&cache).len(), 48);

    // Training anywhere from the shared cache computes nothing and writes the bytes a
    // one-machine run without any cache writes.
    let sharded = t.join("sharded.onnx");
    let r = train_report(t, &data, &sharded, &["--cache", cache.to_str().unwrap()]);
    assert_eq!((n(&r, "features_computed"), n(&r, "features_cached")), (0, 48));
    let single = t.join("single.onnx");
    train_report(t, &data, &single, &["--no-cache"]);
    assert!(std::fs::read(&sharded).unwrap() == std::fs::read(&single).unwrap(), "byte-identical models");

    // A truncated entry is recomputed by the shard that owns it; the others stay cached.
    let all = manifest(&mut features(t, &data, &cache, &[]));
    assert_eq!((n(&all, "files"), n(&all, "cached"), all["shard"].as_str()), (48, 48, Some("0/1")));
    let victim = cache_files(&cache).remove(0);
    let whole = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &whole[..whole.len() - 7]).unwrap();
    let again: Vec<Value> = (0..4).map(|k| shard(t, &data, &cache, k, 4, &[])).collect();
    assert_eq!(again.iter().map(|m| n(m, "computed")).sum::<u64>(), 1);
    assert_eq!(std::fs::read(&victim).unwrap(), whole);

    // int8: every shard calibrates on the images train will (or reads their ranges), so the
    // quantised model from the sharded cache is the one-machine one too.
    let int8 = ["--precision", "int8"];
    let computed: u64 = (0..2).map(|k| n(&shard(t, &data, &cache, k, 2, &int8), "computed")).sum();
    assert_eq!(computed, 48);
    let q = t.join("int8.onnx");
    let r = train_report(t, &data, &q, &[&["--cache", cache.to_str().unwrap()], &int8[..]].concat());
    assert_eq!(n(&r, "features_computed"), 0);
    let q1 = t.join("int8-single.onnx");
    train_report(t, &data, &q1, &[&["--no-cache"], &int8[..]].concat());
    assert!(std::fs::read(&q).unwrap() == std::fs::read(&q1).unwrap(), "byte-identical int8 models");
}

#[test]
fn many_writers_at_once_leave_a_whole_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 16);
    let cache = t.join("cache");
    // Three whole-dataset writers and the four shards, all at once on one empty cache.
    let spawn = |extra: &[&str]| features(t, &data, &cache, extra).stdout(Stdio::null()).spawn().unwrap();
    let mut procs: Vec<_> = (0..3).map(|_| spawn(&["--threads", "1"])).collect();
    for k in 0..4 {
        procs.push(spawn(&["--shard", &format!("{k}/4"), "--threads", "1"]));
    }
    for mut p in procs {
        assert!(p.wait().unwrap().success());
    }
    assert_eq!(cache_files(&cache).len(), 48);
    let leftovers: Vec<_> =
        walk_all(&cache).into_iter().filter(|p| p.extension().is_none_or(|x| x != "feat")).collect();
    assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
    // Every entry is whole: a pass over the cache finds all 48 and computes nothing.
    let m = manifest(&mut features(t, &data, &cache, &[]));
    assert_eq!((n(&m, "cached"), n(&m, "computed")), (48, 0));
}

#[test]
fn a_bad_shard_or_cache_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 2);
    let out = run(&mut features(t, &data, &t.join("c"), &["--shard", "4/4"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K must be below N: shards are counted from 0"));
    let out = run(retrain(t).args(["features", data.to_str().unwrap(), "--no-cache", "--weights"]).arg(mnv2()));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fills a feature cache: give --cache DIR"));
    // A cache folder that cannot be created names itself.
    std::fs::write(t.join("file"), b"").unwrap();
    let out = run(&mut features(t, &data, &t.join("file/cache"), &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("file/cache") && err.contains("feature cache"), "{err}");
}
