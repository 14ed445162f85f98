use crate::{relative_key, Shard};
use retrain::backbone::LoadedBackbone;
use retrain::dataset::{self, Skipped};
use retrain::precision::{self, Precision};
use retrain::train::TrainOptions;
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

/// Computes and caches the features `retrain train` with `opts` will look up, for the files of
/// `shard`: the same dataset walk, backbone, weights, preprocessing and precision (int8 is
/// calibrated on the same training images, or its ranges read from the cache), so a later
/// `train` with the same cache computes nothing. Unreadable files are listed, never fatal.
pub fn extract(opts: &TrainOptions, shard: Shard, progress: &indicatif::ProgressBar) -> Result<Manifest> {
    let started = Instant::now();
    opts.precision.check()?;
    let root = opts.feature_cache.as_deref().ok_or_else(|| Error::Data {
        path: opts.data_dir.clone(),
        reason: "`retrain features` fills a feature cache: give --cache DIR (or drop --no-cache)".into(),
    })?;
    let mut ds = dataset::scan(&opts.data_dir, opts.val_dir.as_deref(), opts.val_fraction, opts.seed)?;
    let mut backbone = LoadedBackbone::load(&opts.model, opts.weights.as_deref(), opts.quiet)?;
    if opts.precision == Precision::Int8 {
        // The ranges depend on which training images calibrate: those `train` would choose.
        ds.set_aside_duplicates(opts.keep_duplicates);
        backbone.calibrate_int8(&precision::calibration_files(&ds.train), opts.threads, Some(root))?;
    }
    let cache = backbone.feature_cache(root);
    cache.check_writable()?;

    let roots: Vec<&Path> = std::iter::once(opts.data_dir.as_path()).chain(opts.val_dir.as_deref()).collect();
    let owned = |p: &Path| shard.owns(&relative_key(p, &roots));
    let mut files: Vec<PathBuf> = ds.train.iter().chain(&ds.val).map(|s| s.path.clone()).collect();
    let dataset_files = files.len();
    files.retain(|p| owned(p));
    // A folder-walk problem is reported by the shard its path falls in, so once in all.
    let mut skipped: Vec<Skipped> = ds.skipped.into_iter().filter(|s| owned(&s.path)).collect();
    drop((ds.train, ds.val));

    progress.set_length(files.len() as u64);
    let mut sessions = backbone.feature_sessions(opts.threads);
    let (mut computed, mut unreadable) = (0, 0);
    for chunk in files.chunks(CHUNK) {
        let out = retrain_features::extract(
            &mut sessions,
            "features",
            chunk,
            backbone.geometry(),
            opts.limits(),
            Some(&cache),
            opts.batch,
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
        data_dir: opts.data_dir.clone(),
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
