//! `retrain train`: dataset → features (cached) → head → one model file + report.

use crate::backbone::LoadedBackbone;
use crate::dataset::{self, Sample};
use crate::metrics::{self, argmax};
use crate::model::ModelInfo;
use crate::report::{Report, Skipped, Timings};
use crate::{progress_bar, Error, Result};
use retrain_features::{FeatureCache, LazySession, Session};
use retrain_head::{HeadConfig, Split};
use retrain_zoo::LinearHead;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub val_dir: Option<PathBuf>,
    pub val_fraction: f64,
    pub seed: u64,
    pub model: String,
    pub weights: Option<PathBuf>,
    pub out: PathBuf,
    pub threads: usize,
    pub batch: usize,
    pub head: HeadConfig,
    pub quiet: bool,
    /// Feature cache root; `None` disables the cache.
    pub feature_cache: Option<PathBuf>,
}

impl TrainOptions {
    pub fn new(data_dir: &Path, model: &str, out: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            val_dir: None,
            val_fraction: 0.2,
            seed: 0,
            model: model.into(),
            weights: None,
            out: out.to_path_buf(),
            threads: crate::default_threads(),
            batch: 32,
            head: HeadConfig::default(),
            quiet: false,
            feature_cache: Some(retrain_weights::cache_dir().join("features")),
        }
    }
}

/// Fails early, before minutes of work, if the model cannot be written where asked.
fn check_writable(out: &Path) -> Result<()> {
    let probe = out.with_extension("onnx.partial");
    std::fs::write(&probe, b"").map_err(|source| Error::Write { path: out.to_path_buf(), source })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn warn(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("warning: {msg}");
    }
}

pub fn train(opts: &TrainOptions) -> Result<Report> {
    let t0 = Instant::now();
    let mut timings = Timings::default();
    check_writable(&opts.out)?;
    let ds = dataset::scan(&opts.data_dir, opts.val_dir.as_deref(), opts.val_fraction, opts.seed)?;
    timings.scan = t0.elapsed().as_secs_f64();

    let t = Instant::now();
    let backbone = LoadedBackbone::load(&opts.model, opts.weights.as_deref(), opts.quiet)?;
    timings.weights = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let all: Vec<&Sample> = ds.train.iter().chain(&ds.val).collect();
    let files: Vec<PathBuf> = all.iter().map(|s| s.path.clone()).collect();
    let cache = opts
        .feature_cache
        .as_ref()
        .map(|root| FeatureCache::new(root, &backbone.cache_key(), backbone.info.feature_dim));
    let mut session = LazySession::new(|| {
        let bytes = backbone.feature_model().map_err(|e| retrain_features::FeatureError::Ort {
            what: backbone.info.name.into(),
            reason: e.to_string(),
        })?;
        Session::new(&bytes, backbone.info.name, opts.threads)
    });
    let bar = progress_bar(files.len() as u64, "features", opts.quiet);
    let extracted = retrain_features::extract(
        &mut session,
        "features",
        &files,
        backbone.geometry(),
        cache.as_ref(),
        opts.batch,
        &bar,
    )?;
    bar.finish_and_clear();
    timings.features = t.elapsed().as_secs_f64();

    let dim = backbone.info.feature_dim;
    let mut skipped = Vec::new();
    let (mut tx, mut ty, mut vx, mut vy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let n_train = ds.train.len();
    for (i, (s, f)) in all.iter().zip(extracted.features).enumerate() {
        match f {
            Ok(f) if i < n_train => {
                tx.extend(f);
                ty.push(s.label)
            }
            Ok(f) => {
                vx.extend(f);
                vy.push(s.label)
            }
            Err(e) => {
                warn(opts.quiet, &format!("skipped {e}"));
                skipped.push(Skipped { path: s.path.clone(), reason: e.reason() });
            }
        }
    }
    for (c, name) in ds.class_names.iter().enumerate() {
        if !ty.contains(&c) {
            let folder = ds
                .train
                .iter()
                .find(|s| s.label == c)
                .and_then(|s| s.path.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            return Err(Error::Data {
                path: folder,
                reason: format!("class `{name}` has no readable image to train on"),
            });
        }
    }

    let t = Instant::now();
    let k = ds.class_names.len();
    let val = (!vy.is_empty()).then_some(Split { features: &vx, labels: &vy });
    let head = retrain_head::train(Split { features: &tx, labels: &ty }, val, dim, k, &opts.head)?;
    timings.head = t.elapsed().as_secs_f64();

    let predict = |x: &[f32]| -> Vec<usize> { head.predict_proba(x).iter().map(|p| argmax(p)).collect() };
    let val_metrics = metrics::compute(&vy, &predict(&vx), &ds.class_names);
    let train_accuracy = metrics::compute(&ty, &predict(&tx), &ds.class_names).accuracy;

    let t = Instant::now();
    let info = ModelInfo {
        class_names: ds.class_names.clone(),
        backbone: backbone.info.name.into(),
        weights_sha256: backbone.weights_sha256.clone(),
        preprocess: backbone.info.preprocess,
    };
    let model =
        backbone.classifier(LinearHead { weight: head.weight.clone(), bias: head.bias.clone() }, &info.metadata())?;
    retrain_onnx::write(&model, &opts.out).map_err(|e| match e {
        retrain_onnx::OnnxError::Write { path, source } => Error::Write { path, source },
        other => other.into(),
    })?;
    timings.export = t.elapsed().as_secs_f64();
    timings.total = t0.elapsed().as_secs_f64();

    let best_val_loss = head.curve.get(head.best_step.saturating_sub(1)).and_then(|s| s.val_loss);
    let mut report = Report {
        model: opts.out.clone(),
        backbone: backbone.info.name.into(),
        weights: backbone.weights_path.clone(),
        weights_sha256: backbone.weights_sha256.clone(),
        split: ds.split.clone(),
        train_images: ty.len(),
        val_images: vy.len(),
        features_cached: files.len() - skipped.len() - extracted.computed,
        features_computed: extracted.computed,
        val_accuracy: 0.0,
        train_accuracy,
        val_loss: best_val_loss,
        best_step: head.best_step,
        steps_run: head.steps_run,
        head: opts.head.clone(),
        class_names: Vec::new(),
        per_class: Vec::new(),
        confusion_matrix: Vec::new(),
        skipped,
        timings,
        curve: head.curve.clone(),
    };
    report.set_val_metrics(val_metrics);
    Ok(report)
}
