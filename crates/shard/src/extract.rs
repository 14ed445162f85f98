use crate::{relative_key, Shard};
use retrain::dataset::Skipped;
use retrain::precision::Precision;
use retrain::prepare;
use retrain::spec::{BackboneSpec, DataSpec, RunSettings, Strategy};
use retrain::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What one shard did: emitted by `retrain features` for the engine that ran it (progress,
/// skew, retries) and for the person reading its logs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub shard: Shard,
    #[serde(with = "retrain_files::names::json")]
    pub data_dir: PathBuf,
    pub backbone: String,
    /// The folder of this backbone's entries in the cache (`CACHE/<key>`).
    #[serde(with = "retrain_files::names::json")]
    pub cache: PathBuf,
    /// Image files in the whole dataset, and in this shard.
    pub dataset_files: usize,
    pub files: usize,
    /// Of this shard's files: features computed now, found in the cache, unreadable.
    pub computed: usize,
    pub cached: usize,
    /// Unreadable files of this shard (as `train`'s report lists them).
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
    /// Files of this shard per second, cached ones included.
    pub images_per_second: f64,
    /// The process's peak resident memory (Linux), to size machines by.
    pub peak_rss_bytes: Option<u64>,
    pub host: String,
}

/// Files per call to the extractor: their rows are dropped once cached, so memory stays that
/// of one chunk whatever the dataset's size.
const CHUNK: usize = 1024;

/// Computes and caches the features `retrain train` on `data` with `backbone` will look up,
/// for the files of `shard`: the same dataset walk and backbone as `train` prepares
/// ([`retrain::prepare`]; int8 calibrated on the same training images, or its ranges read from
/// the cache), so a later `train` with the same cache computes nothing. Unreadable files are
/// listed, never fatal.
pub fn extract(
    data: &DataSpec,
    backbone: &BackboneSpec,
    batch: usize,
    run: &RunSettings,
    shard: Shard,
    progress: &indicatif::ProgressBar,
) -> Result<Manifest> {
    let started = Instant::now();
    backbone.precision.check()?;
    let root = run.cache.as_deref().ok_or_else(|| Error::Data {
        path: data.dir.clone(),
        reason: "`retrain features` fills a feature cache: give --cache DIR (or drop --no-cache)".into(),
    })?;
    // Calibration reads the training images `train` would choose, duplicates set aside; other
    // shards need not read every file.
    let ds = prepare::scan(data, backbone.precision == Precision::Int8, run.quiet)?;
    let (backbone, _) = prepare::extractor(backbone, Strategy::Linear, data.seed, &ds, run)?;
    let cache = backbone.feature_cache(root);
    cache.check_writable()?;

    let roots: Vec<&Path> = std::iter::once(data.dir.as_path()).chain(data.val_dir.as_deref()).collect();
    let owned = |p: &Path| shard.owns(&relative_key(p, &roots));
    let mut files: Vec<PathBuf> = ds.train.iter().chain(&ds.val).map(|s| s.path.clone()).collect();
    let dataset_files = files.len();
    files.retain(|p| owned(p));
    // A folder-walk problem is reported by the shard its path falls in, so once in all.
    let mut skipped: Vec<Skipped> = ds.skipped.into_iter().filter(|s| owned(&s.path)).collect();
    drop((ds.train, ds.val));

    progress.set_length(files.len() as u64);
    let mut sessions = backbone.feature_sessions(run.threads);
    let (mut computed, mut unreadable) = (0, 0);
    for chunk in files.chunks(CHUNK) {
        let out = retrain_features::extract(
            &mut sessions,
            &["features"],
            chunk,
            backbone.geometry(),
            data.limits(),
            Some(&cache),
            batch,
            progress,
        )?;
        computed += out.computed;
        for e in out.features.into_iter().filter_map(Result::err) {
            unreadable += 1;
            skipped.push(Skipped { path: e.path().to_path_buf(), reason: e.reason() });
        }
    }
    drop(sessions);
    let seconds = started.elapsed().as_secs_f64();
    Ok(Manifest {
        shard,
        data_dir: data.dir.clone(),
        backbone: backbone.info.name.into(),
        cache: cache.dir().to_path_buf(),
        dataset_files,
        files: files.len(),
        computed,
        cached: files.len() - computed - unreadable,
        skipped,
        seconds,
        images_per_second: files.len() as f64 / seconds.max(1e-9),
        peak_rss_bytes: peak_rss(),
        host: host(),
    })
}

/// VmHWM of this process, in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}
