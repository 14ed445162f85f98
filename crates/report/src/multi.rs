//! The page for a model that gives photos several labels: mAP and F1 instead of accuracy, each
//! label's average precision at its threshold, which labels come together, and the photos with
//! the most wrong labels, each with where the model looked for the label it got most wrong.

use crate::html::{self, escape, jpeg_uri, About, STYLE};
use crate::{file_name, wilson, Options, Result, Summary, Training, CHUNK};
use indicatif::ProgressBar;
use retrain::eval::Labelled;
use retrain::multi_metrics::{self, MultiMetrics};
use retrain::train_report::{Curves, Skipped};
use retrain_explain::{Explainer, Explanation};
use serde::Serialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the page says of several labels per photo, also in `retrain report --format json`.
#[derive(Clone, Debug, Serialize)]
pub struct MultiSummary {
    /// Each class's threshold, as the model file holds them.
    pub thresholds: Vec<f32>,
    pub metrics: MultiMetrics,
    /// `[a][b]`: the photos labelled both `a` and `b` (the diagonal: labelled `a`).
    pub co_occurrence: Vec<Vec<usize>>,
    /// The photos with the most wrong labels, most first.
    pub most_wrong: Vec<WrongLabels>,
}

/// A photo whose labels the model got wrong.
#[derive(Clone, Debug, Serialize)]
pub struct WrongLabels {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    /// Its labels (the label file's).
    pub labels: Vec<String>,
    /// The model's: each class at or above its threshold.
    pub given: Vec<String>,
    /// Labels it has that the model did not give, and labels the model gave that it has not.
    pub missed: Vec<String>,
    pub added: Vec<String>,
    /// The label farthest from its truth, the one the heatmap explains.
    pub explained: String,
}

struct Row {
    path: PathBuf,
    truth: Vec<bool>,
    probabilities: Vec<f32>,
}

impl Row {
    fn given(&self, t: &[f32]) -> Vec<bool> {
        self.probabilities.iter().zip(t).map(|(p, t)| p >= t).collect()
    }

    /// How many labels are wrong, then how far the probabilities are from the truth.
    fn wrongness(&self, t: &[f32]) -> (usize, f32) {
        let wrong = self.given(t).iter().zip(&self.truth).filter(|(g, y)| g != y).count();
        let far = self.truth.iter().zip(&self.probabilities).map(|(&y, p)| (f32::from(u8::from(y)) - p).abs()).sum();
        (wrong, far)
    }
}

pub(crate) struct Parts {
    pub about: About,
    pub curves: Option<Curves>,
    pub training: Option<Training>,
    pub started: Instant,
}

pub(crate) fn build(
    model: &Path,
    explainer: &mut Explainer,
    set: Labelled,
    parts: Parts,
    opts: Options,
    progress: &ProgressBar,
) -> Result<(String, Summary)> {
    let names = explainer.info.class_names.clone();
    let thresholds = explainer.info.multi_label.as_ref().map(|m| m.thresholds.clone()).unwrap_or_default();
    let k = names.len();
    progress.set_length(set.files.len() as u64);
    let hidden = ProgressBar::hidden();
    let mut skipped = set.skipped.clone();
    let mut rows = Vec::with_capacity(set.files.len());
    explainer.heatmaps = false;
    for (c, chunk) in set.files.chunks(CHUNK).enumerate() {
        for (i, r) in explainer.explain(chunk, None, &hidden)?.into_iter().enumerate() {
            let n = c * CHUNK + i;
            match r {
                Ok(e) => {
                    let mut truth = vec![false; k];
                    for &l in std::iter::once(&set.truth[n]).chain(&set.also[n]) {
                        if let Some(t) = truth.get_mut(l) {
                            *t = true;
                        }
                    }
                    rows.push(Row { path: e.path, truth, probabilities: e.probabilities });
                }
                Err(err) => skipped.push(Skipped { path: chunk[i].clone(), reason: err.reason() }),
            }
            progress.inc(1);
        }
    }
    if rows.is_empty() {
        return Err(crate::ReportError::Empty { path: set.root });
    }

    let truth: Vec<bool> = rows.iter().flat_map(|r| r.truth.iter().copied()).collect();
    let given: Vec<bool> = rows.iter().flat_map(|r| r.given(&thresholds)).collect();
    let scores: Vec<f32> = rows.iter().flat_map(|r| r.probabilities.iter().copied()).collect();
    let metrics = multi_metrics::compute(&truth, &given, &scores, &names);
    let exact = rows.iter().filter(|r| r.wrongness(&thresholds).0 == 0).count();
    let mut co_occurrence = vec![vec![0usize; k]; k];
    for r in &rows {
        let on: Vec<usize> = (0..k).filter(|&c| r.truth[c]).collect();
        for &a in &on {
            for &b in &on {
                co_occurrence[a][b] += 1;
            }
        }
    }

    let mut order: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].wrongness(&thresholds).0 > 0).collect();
    order.sort_by(|&a, &b| {
        let (wa, fa) = rows[a].wrongness(&thresholds);
        let (wb, fb) = rows[b].wrongness(&thresholds);
        wb.cmp(&wa).then(fb.total_cmp(&fa))
    });
    order.truncate(opts.top_losses);
    explainer.heatmaps = true;
    let mut most_wrong = Vec::with_capacity(order.len());
    for &i in &order {
        let r = &rows[i];
        let g = r.given(&thresholds);
        let named = |f: &dyn Fn(usize) -> bool| (0..k).filter(|&c| f(c)).map(|c| names[c].clone()).collect::<Vec<_>>();
        let worst = (0..k)
            .filter(|&c| g[c] != r.truth[c])
            .max_by(|&a, &b| {
                let d = |c: usize| (f32::from(u8::from(r.truth[c])) - r.probabilities[c]).abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(0);
        let e = explainer.explain(std::slice::from_ref(&r.path), Some(worst), &hidden)?.into_iter().next();
        most_wrong.push((
            WrongLabels {
                path: r.path.clone(),
                labels: named(&|c| r.truth[c]),
                given: named(&|c| g[c]),
                missed: named(&|c| r.truth[c] && !g[c]),
                added: named(&|c| g[c] && !r.truth[c]),
                explained: names[worst].clone(),
            },
            e.and_then(|e| e.ok()),
        ));
    }

    let summary = Summary {
        model: model.to_path_buf(),
        backbone: explainer.info.backbone.clone(),
        data: set.root.clone(),
        images: rows.len(),
        accuracy: metrics.subset_accuracy,
        accuracy_interval: wilson(exact, rows.len()),
        metrics: None,
        confused_pairs: Vec::new(),
        top_losses: Vec::new(),
        method: explainer.method.name(),
        feature_map_variance: None,
        open_set: None,
        calibration: None,
        multi_label: Some(MultiSummary {
            thresholds,
            metrics,
            co_occurrence,
            most_wrong: most_wrong.iter().map(|(w, _)| w.clone()).collect(),
        }),
        skipped,
        seconds: parts.started.elapsed().as_secs_f64(),
    };
    let text = render(&summary, &parts, &most_wrong);
    Ok((text, Summary { seconds: parts.started.elapsed().as_secs_f64(), ..summary }))
}

fn render(s: &Summary, parts: &Parts, wrong: &[(WrongLabels, Option<Explanation>)]) -> String {
    let m = s.multi_label.as_ref().expect("a several-labels summary");
    let title = file_name(&s.model);
    let mut h = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} — retrain report</title><style>{STYLE}</style></head><body><main>",
        escape(&title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"sub\">{} on <code>{}</code> · {} labels, several per photo · {} validation photos</p>\
         <nav><a href=\"#labels\">Per label</a><a href=\"#together\">Together</a><a href=\"#wrong\">Most wrong</a>\
         <a href=\"#curves\">Training</a></nav>",
        escape(&title),
        escape(&s.backbone),
        escape(&s.data.display().to_string()),
        m.thresholds.len(),
        s.images
    );
    cards(&mut h, s, m, parts);
    per_label(&mut h, m);
    together(&mut h, m);
    most_wrong(&mut h, wrong, s.method);
    html::curves_section(&mut h, parts.curves.as_ref());
    html::skipped_and_footer(&mut h, s);
    h
}

fn cards(h: &mut String, s: &Summary, m: &MultiSummary, parts: &Parts) {
    let card = |h: &mut String, k: &str, v: &str, d: &str| {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div><div class=\"d\">{d}</div></div>"
        );
    };
    let mm = &m.metrics;
    h.push_str("<section class=\"cards\">");
    card(
        h,
        "Mean average precision",
        &format!("{:.3}", mm.mean_average_precision),
        "how well each label's probability ranks its photos first, averaged over the labels",
    );
    card(
        h,
        "Macro F1",
        &format!("{:.3}", mm.macro_f1),
        &format!("micro F1 {:.3}, at each label's threshold", mm.micro_f1),
    );
    let [lo, hi] = s.accuracy_interval;
    card(
        h,
        "Every label right",
        &format!("{:.1}%", 100.0 * s.accuracy),
        &format!("95% interval {:.1}–{:.1}% on {} photos (none missed, none added)", 100.0 * lo, 100.0 * hi, s.images),
    );
    let hardest = mm
        .per_class
        .iter()
        .filter(|c| c.average_precision.is_some())
        .min_by(|a, b| a.average_precision.unwrap_or(0.0).total_cmp(&b.average_precision.unwrap_or(0.0)));
    if let Some(w) = hardest {
        card(
            h,
            "Hardest label",
            &escape(&w.class),
            &format!("AP {:.3}, F1 {:.3}", w.average_precision.unwrap_or(0.0), w.f1),
        );
    }
    let how = match &parts.about.training {
        Some(a) => format!("fine-tuned: {}", escape(a)),
        None => "linear head on frozen features".into(),
    };
    let data = parts
        .training
        .as_ref()
        .map_or(String::new(), |t| format!("<br>{} training photos; {}", t.train_images, escape(&t.split)));
    card(h, "Backbone", &escape(&s.backbone), &format!("{} · {how}{data}", escape(&parts.about.precision)));
    h.push_str("</section>");
}

fn per_label(h: &mut String, m: &MultiSummary) {
    h.push_str(
        "<section id=\"labels\"><h2>Per label</h2><p class=\"note\">Each label is its own yes or no: a sigmoid, given at or above \
         its threshold (chosen for F1 on the training photos, out of fold). Average precision (AP) does not depend on the \
         threshold: how high the label's photos rank among all photos by its probability. Precision: of the photos given the \
         label, the share that have it; recall: of the photos that have it, the share given it.</p>\
         <table><tr><th>label</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>AP</th><th>photos</th></tr>",
    );
    for (c, t) in m.metrics.per_class.iter().zip(&m.thresholds) {
        let ap = c.average_precision.map_or("–".into(), |a| format!("{a:.3}"));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{t:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{ap}<span class=\"bar\" style=\"width:{:.0}px\"></span></td><td>{}</td></tr>",
            escape(&c.class),
            c.precision,
            c.recall,
            c.f1,
            c.average_precision.unwrap_or(0.0) * 120.0,
            c.support
        );
    }
    h.push_str("</table></section>");
}

fn together(h: &mut String, m: &MultiSummary) {
    let names: Vec<&str> = m.metrics.per_class.iter().map(|c| c.class.as_str()).collect();
    let top = m.co_occurrence.iter().flatten().copied().max().unwrap_or(0).max(1);
    h.push_str(
        "<section id=\"together\"><h2>Labels together</h2><p class=\"note\">How many of these photos have both labels (the \
         diagonal: have the label), darker for more. Labels that always come together are hard to tell apart; one that never \
         comes with another is learned alone.</p><table><tr><th></th>",
    );
    for n in &names {
        let _ = write!(h, "<th>{}</th>", escape(n));
    }
    h.push_str("</tr>");
    for (a, row) in m.co_occurrence.iter().enumerate() {
        let _ = write!(h, "<tr><td>{}</td>", escape(names.get(a).copied().unwrap_or("")));
        for &n in row {
            let share = n as f64 / top as f64;
            let ink = if share > 0.55 { "#fff" } else { "inherit" };
            let _ = write!(h, "<td style=\"background:rgba(78,121,167,{share:.2});color:{ink}\">{n}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></section>");
}

fn most_wrong(h: &mut String, wrong: &[(WrongLabels, Option<Explanation>)], method: &str) {
    let _ = write!(
        h,
        "<section id=\"wrong\"><h2>Photos with the most wrong labels</h2><p class=\"note\">The {} photos with the most labels \
         missed or added (then the farthest probabilities). Beside each, where the model finds the label it got most wrong \
         ({method}): bright means most. A photo missing a label it plainly shows may be mislabelled.</p><div class=\"grid\">",
        wrong.len()
    );
    if wrong.is_empty() {
        h.push_str("<p>Every photo got exactly its labels.</p>");
    }
    for (w, e) in wrong {
        let pics = e.as_ref().map_or(String::new(), |e| {
            let side = e.crop.size[0].min(192) as u32;
            let photo = image::RgbImage::from_raw(e.crop.size[1] as u32, e.crop.size[0] as u32, e.pixels.clone())
                .map(|p| image::imageops::thumbnail(&p, side, side));
            let heat = image::imageops::thumbnail(&retrain_explain::overlay(e), side, side);
            format!(
                "<div class=\"pics\"><img src=\"{}\" alt=\"photo\"><img src=\"{}\" alt=\"heatmap\"></div>",
                photo.map(|p| jpeg_uri(&p, 85)).unwrap_or_default(),
                jpeg_uri(&heat, 85)
            )
        });
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { escape(&v.join(", ")) };
        let _ = write!(
            h,
            "<div class=\"loss\">{pics}<div class=\"t\">labels <b>{}</b> · given {}<br>",
            list(&w.labels),
            list(&w.given)
        );
        if !w.missed.is_empty() {
            let _ = write!(h, "missed <span class=\"bad\">{}</span> ", list(&w.missed));
        }
        if !w.added.is_empty() {
            let _ = write!(h, "added <span class=\"bad\">{}</span>", list(&w.added));
        }
        let _ = write!(
            h,
            "<br><span class=\"sub\">heatmap: {} · <code title=\"{}\">{}</code></span></div></div>",
            escape(&w.explained),
            escape(&w.path.display().to_string()),
            escape(&file_name(&w.path))
        );
    }
    h.push_str("</div></section>");
}
