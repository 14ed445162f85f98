//! One HTML page a person reads about a trained model, written from the `.onnx` file and a
//! labelled folder: the accuracy with its interval, per-class precision / recall / F1, the
//! confusion matrix, the most confused pairs, the highest-loss photos with where the model
//! looked, the training curves the file carries, what the layers see, the first layer's
//! filters and a map of the features. Self-contained: images are data: URIs, charts inline
//! SVG, no script, no font, nothing fetched — it opens from disk and can be mailed.

mod html;
mod multi;
mod stats;
mod svg;

pub use html::{escape, STYLE};
pub use multi::{MultiSummary, WrongLabels};
pub use stats::{confused_pairs, pca2, wilson, Confusion};

use indicatif::ProgressBar;
use retrain::eval::Labelled;
use retrain::metrics::{self, Metrics};
use retrain::train_report::{Curves, Skipped};
use retrain_explain::{Explainer, Explanation};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Retrain(#[from] retrain::Error),
    #[error(transparent)]
    Explain(#[from] retrain_explain::ExplainError),
    #[error("{path}: no photo could be read, so there is nothing to report")]
    Empty { path: PathBuf },
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// How much the page shows.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub threads: usize,
    pub limits: retrain::Limits,
    /// Highest-loss photos shown.
    pub top_losses: usize,
    /// Classes whose layers are pictured (one photo each, the first classes).
    pub layer_classes: usize,
    /// Photos with a thumbnail on the feature map (every photo is a dot).
    pub map_thumbnails: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threads: retrain::default_threads(),
            limits: retrain::Limits::default(),
            top_losses: 12,
            layer_classes: 4,
            map_thumbnails: 400,
        }
    }
}

/// What training said about the data, when the report is drawn right after it.
#[derive(Clone, Debug, Default)]
pub struct Training {
    pub split: String,
    pub train_images: usize,
}

/// A photo the model found hardest: the highest cross-entropy on its true class.
#[derive(Clone, Debug, Serialize)]
pub struct Loss {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    #[serde(rename = "true")]
    pub truth: String,
    pub predicted: String,
    /// The predicted class's probability.
    pub probability: f32,
    pub true_probability: f32,
    pub loss: f32,
}

/// The page's figures, also printed as JSON by `retrain report --format json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    #[serde(with = "retrain_files::names::json")]
    pub model: PathBuf,
    pub backbone: String,
    #[serde(with = "retrain_files::names::json")]
    pub data: PathBuf,
    pub images: usize,
    /// The share of photos the model got right: with several labels per photo, those given
    /// exactly their labels (subset accuracy).
    pub accuracy: f64,
    /// Wilson's 95% interval.
    pub accuracy_interval: [f64; 2],
    /// One label per photo: precision, recall, F1 and the confusion matrix.
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
    /// Several labels per photo: mAP, F1, each label's AP, which labels come together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiSummary>,
    pub confused_pairs: Vec<Confusion>,
    pub top_losses: Vec<Loss>,
    /// How the heatmaps were made.
    pub method: &'static str,
    /// Share of the features' variance the map's two axes show (`None` without features).
    pub feature_map_variance: Option<[f64; 2]>,
    /// The open-set score on these photos: the share accepted, the accuracy on them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_set: Option<retrain::open_set::OpenSetSummary>,
    /// The calibration error before and after the model's temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<retrain::open_set::Calibration>,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
}

/// One validation photo as the model saw it.
struct Row {
    path: PathBuf,
    truth: usize,
    predicted: usize,
    probabilities: Vec<f32>,
    features: Option<Vec<f32>>,
    ood_score: Option<f32>,
    thumbnail: Option<String>,
}

impl Row {
    fn loss(&self) -> f32 {
        -self.probabilities[self.truth].max(1e-12).ln()
    }
}

/// Photos explained per call, so memory stays flat on large folders.
pub(crate) const CHUNK: usize = 128;

/// The page on the validation photos of a run just trained (`train --html`).
pub fn build_after_training(
    trained: &retrain::TrainReport,
    opts: Options,
    progress: &ProgressBar,
) -> Result<(String, Summary)> {
    let training = Training { split: trained.split.clone(), train_images: trained.train_images };
    build(&trained.model, trained.validation_set(), Some(training), opts, progress)
}

/// Writes the page for `model` on the labelled photos `set`; returns it and its figures.
pub fn build(
    model: &Path,
    set: Labelled,
    training: Option<Training>,
    opts: Options,
    progress: &ProgressBar,
) -> Result<(String, Summary)> {
    let started = Instant::now();
    let mut explainer = Explainer::open(model, opts.threads, false)?;
    explainer.limits = opts.limits;
    let names = explainer.info.class_names.clone();
    let (bytes, _) = retrain::model::read(model)?;
    let proto = retrain_onnx::decode(&bytes, model).map_err(retrain::Error::from)?;
    let curves = Curves::read(&proto, model)?;
    let meta = |k: &str| retrain_onnx::metadata(&proto, k).map(str::to_string);
    let about = html::About {
        training: meta("retrain.training"),
        precision: meta("retrain.precision").map_or("fp32".into(), |_| "int8".into()),
    };
    drop((bytes, proto));
    if explainer.info.multi_label.is_some() {
        let parts = multi::Parts { about, curves, training, started };
        return multi::build(model, &mut explainer, set, parts, opts, progress);
    }

    progress.set_length(set.files.len() as u64);
    let stride = set.files.len().div_ceil(opts.map_thumbnails.max(1)).max(1);
    let mut rows = Vec::with_capacity(set.files.len());
    let mut skipped = set.skipped.clone();
    let hidden = ProgressBar::hidden();
    explainer.heatmaps = false;
    for (c, chunk) in set.files.chunks(CHUNK).enumerate() {
        for (i, r) in explainer.explain(chunk, None, &hidden)?.into_iter().enumerate() {
            let n = c * CHUNK + i;
            match r {
                Ok(e) => rows.push(Row {
                    thumbnail: n.is_multiple_of(stride).then(|| html::jpeg_uri(&thumbnail(&e, 64), 80)),
                    path: e.path,
                    truth: set.truth[n],
                    predicted: e.class_index,
                    probabilities: e.probabilities,
                    features: e.features,
                    ood_score: e.ood_score,
                }),
                Err(err) => skipped.push(Skipped { path: chunk[i].clone(), reason: err.reason() }),
            }
            progress.inc(1);
        }
    }
    if rows.is_empty() {
        return Err(ReportError::Empty { path: set.root });
    }

    let truth: Vec<usize> = rows.iter().map(|r| r.truth).collect();
    let predicted: Vec<usize> = rows.iter().map(|r| r.predicted).collect();
    let m = metrics::compute(&truth, &predicted, &names);
    let correct = truth.iter().zip(&predicted).filter(|(t, p)| t == p).count();

    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[b].loss().total_cmp(&rows[a].loss()));
    order.truncate(opts.top_losses);
    let loss_files: Vec<PathBuf> = order.iter().map(|&i| rows[i].path.clone()).collect();
    explainer.heatmaps = true;
    let explained = explainer.explain(&loss_files, None, &hidden)?;
    let losses: Vec<(Loss, Option<Explanation>)> = order
        .iter()
        .zip(explained)
        .map(|(&i, e)| {
            let r = &rows[i];
            let loss = Loss {
                path: r.path.clone(),
                truth: names[r.truth].clone(),
                predicted: names[r.predicted].clone(),
                probability: r.probabilities[r.predicted],
                true_probability: r.probabilities[r.truth],
                loss: r.loss(),
            };
            (loss, e.ok())
        })
        .collect();

    // One clear example per class: its most confident correct photo.
    let mut examples = Vec::new();
    for (c, name) in names.iter().enumerate().take(opts.layer_classes) {
        let best = rows
            .iter()
            .filter(|r| r.truth == c && r.predicted == c)
            .max_by(|a, b| a.probabilities[c].total_cmp(&b.probabilities[c]));
        if let Some(r) = best {
            if let Ok(l) = retrain_explain::layers(model, &r.path, opts.threads, opts.limits)? {
                examples.push((name.clone(), r.path.clone(), l));
            }
        }
    }

    let with_features: Vec<&Row> = rows.iter().filter(|r| r.features.is_some()).collect();
    let feature_rows: Vec<Vec<f32>> = with_features.iter().filter_map(|r| r.features.clone()).collect();
    let (coords, variance) = pca2(&feature_rows);
    let points: Vec<html::Point> = with_features
        .iter()
        .zip(&coords)
        .map(|(r, &xy)| html::Point {
            xy,
            class: r.truth,
            wrong: r.truth != r.predicted,
            label: format!(
                "{} — {}{}",
                file_name(&r.path),
                names[r.truth],
                if r.truth != r.predicted { format!(", taken for {}", names[r.predicted]) } else { String::new() }
            ),
            thumbnail: r.thumbnail.clone(),
        })
        .collect();

    let open = explainer.info.open_set.as_ref().map(|info| {
        let scored: Vec<(retrain::model::Scored, usize)> = rows
            .iter()
            .map(|r| {
                (retrain::model::Scored { probabilities: r.probabilities.clone(), ood_score: r.ood_score }, r.truth)
            })
            .collect();
        let (summary, calibration) = retrain::open_set::summarise(info, &scored);
        let probs: Vec<Vec<f32>> = rows.iter().map(|r| r.probabilities.clone()).collect();
        let before: Vec<Vec<f32>> =
            probs.iter().map(|p| retrain::open_set::uncalibrated(p, info.temperature)).collect();
        let scores = rows.iter().map(|r| (r.ood_score.unwrap_or(f32::NAN), r.truth == r.predicted)).collect();
        let figures = html::OpenSetFigures {
            threshold: info.threshold,
            before: retrain::open_set::reliability(&before, &truth, 10),
            after: retrain::open_set::reliability(&probs, &truth, 10),
            scores,
        };
        (summary, calibration, figures)
    });
    let summary = Summary {
        model: model.to_path_buf(),
        backbone: explainer.info.backbone.clone(),
        data: set.root.clone(),
        images: rows.len(),
        accuracy: m.accuracy,
        accuracy_interval: wilson(correct, rows.len()),
        // Past the SVG's reach the list is what names the confusions: a longer one.
        confused_pairs: confused_pairs(
            &m.confusion_matrix,
            &names,
            if names.len() > svg::SVG_CLASSES { 40 } else { 10 },
        ),
        metrics: Some(m),
        multi_label: None,
        top_losses: losses.iter().map(|(l, _)| l.clone()).collect(),
        method: explainer.method.name(),
        feature_map_variance: (!points.is_empty()).then_some(variance),
        open_set: open.as_ref().map(|o| o.0.clone()),
        calibration: open.as_ref().map(|o| o.1.clone()),
        skipped,
        seconds: started.elapsed().as_secs_f64(),
    };
    let page = html::Page {
        summary: &summary,
        about,
        training,
        curves,
        losses: &losses,
        examples: &examples,
        points: &points,
        open_set: open.as_ref().map(|o| &o.2),
    };
    let text = page.render();
    Ok((text, Summary { seconds: started.elapsed().as_secs_f64(), ..summary }))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The crop the model saw, scaled to `side` pixels.
fn thumbnail(e: &Explanation, side: u32) -> image::RgbImage {
    let s = e.crop.size[0] as u32;
    let img = image::RgbImage::from_raw(s, s, e.pixels.clone()).expect("crop is size×size RGB");
    image::imageops::thumbnail(&img, side, side)
}
