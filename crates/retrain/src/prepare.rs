//! The first stage of every run: scan the photos, load the backbone (cut, int8-calibrated)
//! and compute or read from the cache the features of every photo. `retrain features`
//! computes a shard of the same features with [`scan`] and [`extractor`], so that a shard
//! computes exactly what `train` looks up.

use crate::backbone::LoadedBackbone;
use crate::dataset::{self, Dataset, Sample, Skipped};
use crate::outputs::{warn, warn_duplicates, warn_unlisted};
use crate::precision::{self, Precision};
use crate::spec::{BackboneSpec, DataSpec, Recipe, RunSettings, Strategy};
use crate::{progress_bar, Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Seconds spent in each stage of a run (the report's `timings`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub scan: f64,
    pub weights: f64,
    /// int8 calibration (0 at fp32).
    pub calibration: f64,
    pub features: f64,
    pub head: f64,
    /// Fine-tuning epochs (0 for a linear head).
    pub finetune: f64,
    pub export: f64,
    /// The open-set bank, threshold and temperature (within `export`).
    pub open_set: f64,
    pub total: f64,
}

/// The data and the backbone's features of every photo that decoded.
pub struct Prepared {
    pub ds: Dataset,
    pub backbone: LoadedBackbone,
    /// The samples that decoded, with their features (row-major).
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub tx: Vec<f32>,
    pub vx: Vec<f32>,
    pub skipped: Vec<Skipped>,
    /// Features read from the cache.
    pub cached: usize,
    pub computed: usize,
    pub timings: Timings,
    pub started: Instant,
}

impl Prepared {
    pub fn train_labels(&self) -> Vec<usize> {
        self.train.iter().map(|s| s.label).collect()
    }

    pub fn val_labels(&self) -> Vec<usize> {
        self.val.iter().map(|s| s.label).collect()
    }

    /// Row-major `[photos, classes]`: 1 where the photo has the class, else 0.
    pub fn targets(&self, samples: &[Sample]) -> Vec<f32> {
        let k = self.ds.class_names.len();
        let mut t = vec![0f32; samples.len() * k];
        for (i, s) in samples.iter().enumerate() {
            for c in s.labels() {
                t[i * k + c] = 1.0;
            }
        }
        t
    }
}

/// The photos of a run: the folder walk (or label file: the files it leaves out are said
/// unless `quiet`) and split, photos found twice set aside (when `set_aside`: it reads every
/// file) and `data.shots` taken per class.
pub fn scan(data: &DataSpec, set_aside: bool, quiet: bool) -> Result<Dataset> {
    let mut ds = match &data.labels {
        Some(src) => dataset::scan_labels(&data.dir, src, data.val_fraction, data.seed)?,
        None => dataset::scan(&data.dir, data.val_dir.as_deref(), data.val_fraction, data.seed)?,
    };
    if let Some(src) = &data.labels {
        warn_unlisted(&ds.unlisted, &data.dir, &src.file, quiet);
        let several = ds.train.iter().chain(&ds.val).find(|s| !s.also.is_empty());
        if let (Some(s), crate::spec::Task::SingleLabel) = (several, data.task) {
            let names: Vec<&str> = s.labels().map(|l| ds.class_names[l].as_str()).collect();
            return Err(crate::Error::Data {
                path: src.file.clone(),
                reason: format!(
                    "{} has {} labels ({}) but --task single-label gives each photo one: use --task multi-label",
                    retrain_files::names::shown(&s.path),
                    names.len(),
                    names.join(", ")
                ),
            });
        }
        if several.is_some() && data.task == crate::spec::Task::Auto && !quiet {
            eprintln!("some photos have several labels: training one sigmoid per class (--task multi-label)");
        }
    }
    ds.multi_label = match data.task {
        crate::spec::Task::Auto => ds.multi_label,
        crate::spec::Task::SingleLabel => false,
        crate::spec::Task::MultiLabel => true,
    };
    if set_aside {
        ds.set_aside_duplicates(data.keep_duplicates);
    }
    if let Some(fs) = data.shots {
        ds.train =
            dataset::few_shot(&ds.train, fs.per_class, fs.seed).into_iter().map(|i| ds.train[i].clone()).collect();
    }
    Ok(ds)
}

/// The backbone a run's features come from: `spec`'s weights (`--weights`, `--weights
/// NAME=FILE`, the cache) or, training from scratch, a random initialisation seeded by `seed`;
/// cut where asked; for an int8 linear head, calibrated on `ds`'s training photos (fine-tuning
/// learns in fp32 and quantises what it exports). Returns the seconds calibration took.
pub fn extractor(
    spec: &BackboneSpec,
    strategy: Strategy,
    seed: u64,
    ds: &Dataset,
    run: &RunSettings,
) -> Result<(LoadedBackbone, f64)> {
    let mut backbone = match strategy {
        Strategy::Scratch => LoadedBackbone::random(&spec.name, seed)?,
        _ => LoadedBackbone::load(&spec.name, spec.weights_file(), run.quiet)?,
    };
    if let Some(stage) = spec.cut {
        backbone.cut_at(stage, run.threads)?;
    }
    let mut calibration = 0.0;
    if spec.precision == Precision::Int8 && strategy == Strategy::Linear {
        let t = Instant::now();
        backbone.calibrate_int8(&precision::calibration_files(&ds.train), run.threads, run.cache.as_deref())?;
        calibration = t.elapsed().as_secs_f64();
    }
    Ok((backbone, calibration))
}

/// Scan, load the backbone, extract (or read cached) the features of every photo.
pub fn prepare(data: &DataSpec, spec: &BackboneSpec, recipe: &Recipe, run: &RunSettings) -> Result<Prepared> {
    let t0 = Instant::now();
    let ds = scan(data, true, run.quiet)?;
    warn_duplicates(&ds, data.keep_duplicates, run.quiet);
    prepare_scanned(ds, data, spec, recipe, run, t0)
}

/// [`prepare`] on photos already scanned (since `t0`): for a caller that reports copies
/// itself.
pub fn prepare_scanned(
    ds: Dataset,
    data: &DataSpec,
    spec: &BackboneSpec,
    recipe: &Recipe,
    run: &RunSettings,
    t0: Instant,
) -> Result<Prepared> {
    let mut timings = Timings { scan: t0.elapsed().as_secs_f64(), ..Timings::default() };

    let t = Instant::now();
    let (backbone, calibration) = extractor(spec, recipe.strategy, data.seed, &ds, run)?;
    timings.calibration = calibration;
    timings.weights = t.elapsed().as_secs_f64() - calibration;

    let t = Instant::now();
    let all: Vec<&Sample> = ds.train.iter().chain(&ds.val).collect();
    let files: Vec<PathBuf> = all.iter().map(|s| s.path.clone()).collect();
    // A random backbone's features are worth nothing once its run is over.
    let cache = match recipe.strategy {
        Strategy::Scratch => None,
        _ => run.cache.as_deref().map(|root| backbone.feature_cache(root)),
    };
    let mut sessions = backbone.feature_sessions(run.threads);
    let bar = progress_bar(files.len() as u64, "features", run.quiet);
    let extracted = retrain_features::extract(
        &mut sessions,
        &["features"],
        &files,
        backbone.geometry(),
        data.limits(),
        cache.as_ref(),
        recipe.batch,
        &bar,
    )?;
    bar.finish_and_clear();
    timings.features = t.elapsed().as_secs_f64();

    let mut skipped = Vec::new();
    for s in &ds.skipped {
        warn(run.quiet, &format!("skipped {}: {}", s.path.display(), s.reason));
        skipped.push(s.clone());
    }
    let (mut tx, mut vx) = (Vec::new(), Vec::new());
    let mut has = vec![false; ds.class_names.len()];
    let (mut train_ok, mut val_ok) = (Vec::new(), Vec::new());
    let n_train = ds.train.len();
    for (i, (s, f)) in all.iter().zip(extracted.features).enumerate() {
        match f {
            Ok(f) if i < n_train => {
                tx.extend(f);
                s.labels().for_each(|c| has[c] = true);
                train_ok.push((*s).clone());
            }
            Ok(f) => {
                vx.extend(f);
                val_ok.push((*s).clone());
            }
            Err(e) => {
                warn(run.quiet, &format!("skipped {e}"));
                skipped.push(Skipped { path: s.path.clone(), reason: e.reason() });
            }
        }
    }
    for (c, name) in ds.class_names.iter().enumerate() {
        if !has[c] {
            let folder = ds
                .train
                .iter()
                .find(|s| s.labels().any(|l| l == c))
                .and_then(|s| s.path.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            return Err(Error::Data {
                path: folder,
                reason: format!("class `{name}` has no readable image to train on"),
            });
        }
    }

    drop(sessions);
    let cached = train_ok.len() + val_ok.len() - extracted.computed;
    Ok(Prepared {
        ds,
        backbone,
        train: train_ok,
        val: val_ok,
        tx,
        vx,
        skipped,
        cached,
        computed: extracted.computed,
        timings,
        started: t0,
    })
}
