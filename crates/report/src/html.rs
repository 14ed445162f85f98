//! The page itself: a small template filled with `write!`, its images as data: URIs.

use crate::svg::{self, colour, Series};
use crate::{file_name, Loss, Summary, Training};
use retrain::train_report::Curves;
use retrain_explain::{Explanation, Layers};
use std::fmt::Write;
use std::path::PathBuf;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub use retrain_explain::{jpeg_uri, png_uri};

/// What the model file says about how it was made.
pub struct About {
    pub training: Option<String>,
    pub precision: String,
}

/// A validation photo on the feature map.
pub struct Point {
    pub xy: [f32; 2],
    pub class: usize,
    pub wrong: bool,
    pub label: String,
    pub thumbnail: Option<String>,
}

/// What the page draws of the open-set score and the calibration.
pub struct OpenSetFigures {
    pub threshold: f32,
    /// Reliability bins without and with the model's temperature.
    pub before: Vec<retrain::open_set::Bin>,
    pub after: Vec<retrain::open_set::Bin>,
    /// Each photo's `ood_score` and whether its top class was right.
    pub scores: Vec<(f32, bool)>,
}

pub struct Page<'a> {
    pub summary: &'a Summary,
    pub about: About,
    pub training: Option<Training>,
    pub curves: Option<Curves>,
    pub losses: &'a [(Loss, Option<Explanation>)],
    pub examples: &'a [(String, PathBuf, Layers)],
    pub points: &'a [Point],
    pub open_set: Option<&'a OpenSetFigures>,
}

pub const STYLE: &str = r#"
:root{--ink:#1d1d1f;--muted:#5f6368;--line:#e3e3e3;--accent:#4e79a7}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);margin:0;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 64px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:0 0 6px}
.sub,.note{color:var(--muted)}.note{margin:0 0 14px;max-width:860px}
code{overflow-wrap:anywhere}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:20px 22px;margin:18px 0}
nav a{margin-right:14px;color:var(--accent);text-decoration:none;font-size:14px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(230px,1fr));gap:14px;background:none;border:0;padding:0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 18px;min-width:0;overflow-wrap:anywhere}
.card .k{color:var(--muted);font-size:13px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:30px;font-weight:600}.card .d{color:var(--muted);font-size:13px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:5px 12px;border-bottom:1px solid var(--line);text-align:right}th:first-child,td:first-child{text-align:left}
th{font-size:13px;color:var(--muted);font-weight:600}
.bar{display:inline-block;height:9px;border-radius:2px;background:var(--accent);vertical-align:middle;margin-left:8px}
.two{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}
.loss{border:1px solid var(--line);border-radius:8px;padding:8px;font-size:13px}
.loss .pics{display:flex;gap:4px}.loss img{width:50%;border-radius:4px;display:block}
.loss .t{margin-top:6px}.bad{color:#c0392b;font-weight:600}.good{color:#2e7d32;font-weight:600}
.chart{max-width:100%;height:auto}.chart .tick{font-size:11px;fill:#555}.chart .axis{font-size:12px;fill:#333}
.matrix{margin:0}.matrix img{image-rendering:pixelated;width:640px;max-width:100%;height:auto;border:1px solid var(--line)}
.matrix figcaption{color:var(--muted);font-size:13px}
.strip{max-width:100%;display:block;margin:6px 0;border:1px solid var(--line);border-radius:6px}
.example h3{font-size:16px;margin:16px 0 2px}
.map{position:relative;width:640px;height:480px;max-width:100%;border:1px solid var(--line);border-radius:6px;background:#fff}
.pt{position:absolute;width:10px;height:10px;margin:-5px 0 0 -5px;border-radius:50%;opacity:.85}
.pt.wrong{border:2px solid #111}
.pt img{display:none;position:absolute;left:12px;top:-70px;width:96px;height:96px;border:2px solid #fff;border-radius:4px;box-shadow:0 2px 8px rgba(0,0,0,.35)}
.pt:hover{z-index:10;opacity:1}.pt:hover img{display:block}
.legend span{display:inline-block;margin:0 14px 4px 0;font-size:13px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:5px}
footer{color:var(--muted);font-size:13px;margin-top:24px}
"#;

/// The photos that could not be read, and the footer that closes the page.
pub fn skipped_and_footer(h: &mut String, s: &Summary) {
    if !s.skipped.is_empty() {
        let _ = write!(h, "<section id=\"skipped\"><h2>Skipped photos ({})</h2><ul>", s.skipped.len());
        for k in &s.skipped {
            let _ = write!(h, "<li><code>{}</code>: {}</li>", escape(&k.path.display().to_string()), escape(&k.reason));
        }
        *h += "</ul></section>";
    }
    let _ = writeln!(
        h,
        "<footer>Written by retrain {} from <code>{}</code> in {:.1} s. Everything on this page is inside this file.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        escape(&s.model.display().to_string()),
        s.seconds
    );
}

/// The training curves the model file carries.
pub fn curves_section(h: &mut String, curves: Option<&Curves>) {
    *h += "<section id=\"curves\"><h2>Training</h2>";
    let Some(c) = curves else {
        *h += "<p class=\"note\">This model file carries no training curves (it was written by an older retrain or another tool).</p></section>";
        return;
    };
    let train: Vec<(f64, f64)> = c.head.iter().map(|s| (s.step as f64, s.train_loss as f64)).collect();
    let val: Vec<(f64, f64)> = c.head.iter().filter_map(|s| s.val_loss.map(|v| (s.step as f64, v as f64))).collect();
    let _ = write!(
        h,
        "<p class=\"note\">The linear head on the frozen backbone's features, step by step (full batch). The model keeps the \
         step with the lowest validation loss.</p>{}",
        svg::line_chart(
            "step",
            "cross-entropy",
            &[
                Series { name: "train loss".into(), colour: colour(0), dashed: false, points: train },
                Series { name: "validation loss".into(), colour: colour(1), dashed: false, points: val },
            ],
            Some((c.best_step as f64, "kept")),
        )
    );
    if !c.finetune.is_empty() {
        let pts = |f: fn(&retrain::train_report::EpochPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            c.finetune.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect()
        };
        let losses = [
            Series {
                name: "train loss".into(),
                colour: colour(0),
                dashed: false,
                points: pts(|e| e.train_loss.map(f64::from)),
            },
            Series {
                name: "validation loss".into(),
                colour: colour(1),
                dashed: false,
                points: pts(|e| e.val_loss.map(f64::from)),
            },
        ];
        let accs = [
            Series {
                name: "train accuracy".into(),
                colour: colour(0),
                dashed: true,
                points: pts(|e| e.train_accuracy),
            },
            Series {
                name: "validation accuracy".into(),
                colour: colour(1),
                dashed: true,
                points: pts(|e| e.val_accuracy),
            },
        ];
        let mark = Some((c.best_epoch as f64, "kept"));
        let _ = write!(
            h,
            "<h3>Fine-tuning</h3><p class=\"note\">Epoch 0 is the linear head it started from; then the upper blocks and the head \
             trained together. The kept epoch has the lowest validation loss.</p><div class=\"two\">{}{}</div>",
            svg::line_chart("epoch", "cross-entropy", &losses, mark),
            svg::line_chart("epoch", "accuracy", &accs, mark)
        );
    }
    *h += "</section>";
}

impl Page<'_> {
    pub fn render(&self) -> String {
        let s = self.summary;
        let title = file_name(&s.model);
        let mut h = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{} — retrain report</title><style>{STYLE}</style></head><body><main>",
            escape(&title)
        );
        let _ = write!(
            h,
            "<h1>{}</h1><p class=\"sub\">{} on <code>{}</code> · {} classes · {} validation photos</p>",
            escape(&title),
            escape(&s.backbone),
            escape(&s.data.display().to_string()),
            self.metrics().class_names.len(),
            s.images
        );
        h += "<nav><a href=\"#classes\">Per class</a><a href=\"#confusion\">Confusions</a><a href=\"#losses\">Top losses</a>\
              <a href=\"#curves\">Training</a><a href=\"#calibration\">Calibration</a><a href=\"#open-set\">Unknown photos</a>\
              <a href=\"#layers\">Layers</a><a href=\"#map\">Feature map</a></nav>";
        self.cards(&mut h);
        self.per_class(&mut h);
        self.confusion(&mut h);
        self.top_losses(&mut h);
        self.curves(&mut h);
        self.open_set(&mut h);
        self.layers(&mut h);
        self.map(&mut h);
        skipped_and_footer(&mut h, s);
        h
    }

    fn cards(&self, h: &mut String) {
        let s = self.summary;
        let [lo, hi] = s.accuracy_interval;
        let card = |h: &mut String, k: &str, v: &str, d: &str| {
            let _ = write!(h, "<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div><div class=\"d\">{d}</div></div>");
        };
        *h += "<section class=\"cards\">";
        card(
            h,
            "Validation accuracy",
            &format!("{:.1}%", 100.0 * s.accuracy),
            &format!("95% interval {:.1}–{:.1}% on {} photos", 100.0 * lo, 100.0 * hi, s.images),
        );
        let worst = self.metrics().per_class.iter().min_by(|a, b| a.f1.total_cmp(&b.f1));
        if let Some(w) = worst {
            card(h, "Hardest class", &escape(&w.class), &format!("F1 {:.3}, recall {:.3}", w.f1, w.recall));
        }
        card(h, "Backbone", &escape(&s.backbone), &format!("{} · {}", escape(&self.about.precision), s.method));
        // The model file says how it was trained; training itself adds the data it saw.
        let (what, how) = match &self.about.training {
            Some(a) if a.starts_with("full") => ("Full fine-tuning", escape(a)),
            Some(a) => ("Fine-tuned", escape(a)),
            None => (
                "Linear head",
                self.curves.as_ref().map_or(String::new(), |c| {
                    format!("on frozen features, kept step {} of {}", c.best_step, c.head.len())
                }),
            ),
        };
        let data = self
            .training
            .as_ref()
            .map_or(String::new(), |t| format!("<br>{} training photos; {}", t.train_images, escape(&t.split)));
        card(h, "Training", what, &format!("{how}{data}"));
        *h += "</section>";
    }

    fn per_class(&self, h: &mut String) {
        let m = self.metrics();
        *h += "<section id=\"classes\"><h2>Per class</h2><p class=\"note\">Precision: of the photos the model put in the class, \
               the share that belong there. Recall: of the class's photos, the share it found. F1 is their harmonic mean.</p>\
               <table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>photos</th></tr>";
        for c in &m.per_class {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}<span class=\"bar\" style=\"width:{:.0}px\"></span></td><td>{}</td></tr>",
                escape(&c.class),
                c.precision,
                c.recall,
                c.f1,
                c.f1 * 120.0,
                c.support
            );
        }
        *h += "</table></section>";
    }

    fn confusion(&self, h: &mut String) {
        let s = self.summary;
        let _ = write!(
            h,
            "<section id=\"confusion\"><h2>Confusion matrix</h2><p class=\"note\">Rows: the true class; columns: what the model said. \
             Blue is right, red is wrong, shaded by the share of the row.</p><div class=\"two\"><div>{}</div><div>",
            svg::confusion(&self.metrics().confusion_matrix, &self.metrics().class_names)
        );
        if s.confused_pairs.is_empty() {
            *h += "<p>No photo was taken for another class.</p>";
        } else {
            *h += "<h3>Most confused</h3><table><tr><th>true</th><th>taken for</th><th>photos</th></tr>";
            for p in &s.confused_pairs {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&p.truth),
                    escape(&p.predicted),
                    p.count
                );
            }
            *h += "</table>";
        }
        *h += "</div></div></section>";
    }

    fn top_losses(&self, h: &mut String) {
        let _ = write!(
            h,
            "<section id=\"losses\"><h2>Top losses</h2><p class=\"note\">The {} photos the model was most wrong about \
             (lowest probability for their true class). Beside each, where the evidence for what it <em>predicted</em> lies \
             ({}): bright means most. Mislabelled photos, odd crops and look-alike classes show up here first.</p><div class=\"grid\">",
            self.losses.len(),
            self.summary.method
        );
        for (l, e) in self.losses {
            let pics = match e {
                Some(e) => {
                    let side = e.crop.size[0].min(192) as u32;
                    let photo =
                        image::RgbImage::from_raw(e.crop.size[1] as u32, e.crop.size[0] as u32, e.pixels.clone())
                            .map(|p| image::imageops::thumbnail(&p, side, side));
                    let heat = image::imageops::thumbnail(&retrain_explain::overlay(e), side, side);
                    format!(
                        "<div class=\"pics\"><img src=\"{}\" alt=\"photo\"><img src=\"{}\" alt=\"heatmap\"></div>",
                        photo.map(|p| jpeg_uri(&p, 85)).unwrap_or_default(),
                        jpeg_uri(&heat, 85)
                    )
                }
                None => String::new(),
            };
            let verdict = if l.truth == l.predicted { "good" } else { "bad" };
            let _ = write!(
                h,
                "<div class=\"loss\">{pics}<div class=\"t\">true <b>{}</b> · predicted <span class=\"{verdict}\">{}</span> {:.0}%<br>\
                 <span class=\"sub\">p(true) {:.3} · loss {:.2} · <code title=\"{}\">{}</code></span></div></div>",
                escape(&l.truth),
                escape(&l.predicted),
                100.0 * l.probability,
                l.true_probability,
                l.loss,
                escape(&l.path.display().to_string()),
                escape(&file_name(&l.path))
            );
        }
        *h += "</div></section>";
    }

    fn open_set(&self, h: &mut String) {
        let (Some(f), Some(os), Some(cal)) = (self.open_set, &self.summary.open_set, &self.summary.calibration) else {
            *h += "<section id=\"calibration\"><h2>Calibration and unknown photos</h2><p class=\"note\">This model file has no \
                   open-set score or temperature (it was written by an older retrain): train it again to get them.</p></section>";
            return;
        };
        let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}%", 100.0 * v));
        let bins = |b: &[retrain::open_set::Bin]| -> Vec<(f64, f64)> {
            b.iter().filter(|b| b.count >= 5).map(|b| (b.confidence, b.accuracy)).collect()
        };
        let _ = write!(
            h,
            "<section id=\"calibration\"><h2>Calibration</h2><p class=\"note\">Of the photos the model gives a top probability \
             near p, a share p should be right: points on the diagonal (tenths of the probability with 5 photos or more). The model divides its logits by a temperature of {:.3}, \
             fitted on its training photos out of fold; the expected calibration error on these photos is {} with it, {} without.</p>{}</section>",
            cal.temperature,
            pct(cal.ece_after),
            pct(cal.ece_before),
            svg::line_chart(
                "top probability",
                "share right",
                &[
                    Series { name: "perfect".into(), colour: "#999999", dashed: true, points: vec![(0.0, 0.0), (1.0, 1.0)] },
                    Series { name: "without temperature".into(), colour: colour(1), dashed: false, points: bins(&f.before) },
                    Series { name: "the model".into(), colour: colour(0), dashed: false, points: bins(&f.after) },
                ],
                None,
            )
        );
        // The scores' distribution: counts per bin, right and wrong photos apart.
        let finite: Vec<f32> = f.scores.iter().map(|s| s.0).filter(|s| s.is_finite()).collect();
        let hi = finite.iter().copied().fold(f.threshold, f32::max).max(1e-3) as f64 * 1.05;
        let n = 24;
        let hist = |right: bool| -> Vec<(f64, f64)> {
            let mut c = vec![0usize; n];
            for &(s, _) in f.scores.iter().filter(|x| x.1 == right && x.0.is_finite()) {
                c[((s as f64 / hi * n as f64) as usize).min(n - 1)] += 1;
            }
            c.iter().enumerate().map(|(i, &k)| ((i as f64 + 0.5) * hi / n as f64, k as f64)).collect()
        };
        let _ = write!(
            h,
            "<section id=\"open-set\"><h2>Photos of none of the classes</h2><p class=\"note\">Each photo's <code>ood_score</code>: \
             one minus its likeness to the nearest training photo the model stores. Above the threshold ({:.3}, chosen to accept 95% \
             of the training photos out of fold) the model answers \"unknown\" (<code>--reject auto</code>). Here it accepts {} of the \
             photos; its accuracy on those is {}. Photos it gets wrong tend to score higher.</p>{}</section>",
            f.threshold,
            pct(os.val_acceptance),
            pct(os.val_accuracy_accepted),
            svg::line_chart(
                "ood_score",
                "photos",
                &[
                    Series { name: "right".into(), colour: colour(0), dashed: false, points: hist(true) },
                    Series { name: "wrong".into(), colour: colour(2), dashed: false, points: hist(false) },
                ],
                Some((f.threshold as f64, "threshold")),
            )
        );
    }

    fn curves(&self, h: &mut String) {
        curves_section(h, self.curves.as_ref());
    }

    /// The one-label metrics this page is drawn for.
    fn metrics(&self) -> &retrain::metrics::Metrics {
        self.summary.metrics.as_ref().expect("a one-label summary")
    }

    fn layers(&self, h: &mut String) {
        *h += "<section id=\"layers\"><h2>What the layers see</h2><p class=\"note\">One photo per class, through the backbone's \
               stages from early to late (the last feature map at each resolution). Each tile is one channel's activation over the \
               photo, brightest where it responds most: early stages follow edges and colours, late ones whole parts of the object.</p>";
        for (class, path, l) in self.examples {
            let _ = write!(
                h,
                "<div class=\"example\"><h3>{} <span class=\"sub\">· <code>{}</code></span></h3>",
                escape(class),
                escape(&file_name(path))
            );
            for i in 0..l.stages.len() {
                // JPEG: the smooth maps are most of the page's bytes as PNG (a tenth as JPEG).
                let strip = jpeg_uri(&retrain_explain::render_stage(l, i), 90);
                let _ = write!(h, "<img class=\"strip\" src=\"{strip}\" alt=\"stage {}\">", i + 1);
            }
            *h += "</div>";
        }
        if self.examples.is_empty() {
            *h += "<p>No class has a correctly classified photo to show.</p>";
        }
        if let Some(f) = self.examples.first().and_then(|(_, _, l)| l.filters.as_ref()) {
            let _ = write!(
                h,
                "<h3 id=\"filters\">First-layer filters</h3><p class=\"note\">The first convolution's weights as colour patches \
                 (grey is zero): oriented edges, colour opponents and blobs — what every later layer is built from.</p>\
                 <img class=\"strip\" src=\"{}\" alt=\"first-layer filters\">",
                png_uri(&retrain_explain::render_filters(f))
            );
        }
        *h += "</section>";
    }

    fn map(&self, h: &mut String) {
        *h += "<section id=\"map\"><h2>Feature map</h2>";
        let Some([a, b]) = self.summary.feature_map_variance else {
            *h += "<p class=\"note\">The heatmaps of this model come from occlusion, which does not read its features.</p></section>";
            return;
        };
        let _ = write!(
            h,
            "<p class=\"note\">Each validation photo's features (what the head reads) projected on their two main directions \
             (PCA: {:.0}% and {:.0}% of the variance), coloured by true class; a ringed dot was misclassified. \
             Point at a dot to see its photo. Classes that form separate clouds are easy for a linear head.</p><div class=\"legend\">",
            100.0 * a,
            100.0 * b
        );
        for (i, n) in self.metrics().class_names.iter().enumerate() {
            let _ = write!(h, "<span><i style=\"background:{}\"></i>{}</span>", colour(i), escape(n));
        }
        *h += "</div><div class=\"map\">";
        let fold = |k: usize| {
            self.points
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| (lo.min(p.xy[k]), hi.max(p.xy[k])))
        };
        let ((x0, x1), (y0, y1)) = (fold(0), fold(1));
        for p in self.points {
            let x = 3.0 + 94.0 * (p.xy[0] - x0) / (x1 - x0).max(1e-6);
            let y = 97.0 - 94.0 * (p.xy[1] - y0) / (y1 - y0).max(1e-6);
            let img = p.thumbnail.as_ref().map_or(String::new(), |t| format!("<img src=\"{t}\" alt=\"\">"));
            let _ = write!(
                h,
                "<span class=\"pt{}\" style=\"left:{x:.2}%;top:{y:.2}%;background:{}\" title=\"{}\">{img}</span>",
                if p.wrong { " wrong" } else { "" },
                colour(p.class),
                escape(&p.label)
            );
        }
        *h += "</div></section>";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_reads_as_markup() {
        assert_eq!(escape(r#"<b a="1">Tom & Jerry's</b>"#), "&lt;b a=&quot;1&quot;&gt;Tom &amp; Jerry&#39;s&lt;/b&gt;");
    }

    #[test]
    fn a_thousand_classes_make_a_page_of_a_few_megabytes() {
        let k = 1000;
        let names: Vec<String> = (0..k).map(|i| format!("a fairly long class name {i}")).collect();
        // Five validation photos a class, one in five taken for a neighbour.
        let (mut truth, mut said) = (Vec::new(), Vec::new());
        for c in 0..k {
            for i in 0..5 {
                truth.push(c);
                said.push(if i == 0 { (c * 31 + 7) % k } else { c });
            }
        }
        let metrics = retrain::metrics::compute(&truth, &said, &names);
        let summary = Summary {
            model: "m.onnx".into(),
            backbone: "mobilenet_v2".into(),
            data: "data".into(),
            images: truth.len(),
            accuracy: metrics.accuracy,
            accuracy_interval: [0.7, 0.9],
            confused_pairs: crate::stats::confused_pairs(&metrics.confusion_matrix, &names, 40),
            metrics: Some(metrics),
            multi_label: None,
            top_losses: Vec::new(),
            method: "grad-cam",
            feature_map_variance: Some([0.2, 0.1]),
            open_set: None,
            calibration: None,
            skipped: Vec::new(),
            seconds: 1.0,
        };
        let thumb = jpeg_uri(&image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 90])), 80);
        let points: Vec<Point> = (0..truth.len())
            .map(|i| Point {
                xy: [(i % 97) as f32, (i % 89) as f32],
                class: truth[i],
                wrong: truth[i] != said[i],
                label: names[truth[i]].clone(),
                thumbnail: (i % 13 == 0).then(|| thumb.clone()),
            })
            .collect();
        let page = Page {
            summary: &summary,
            about: About { training: None, precision: "fp32".into() },
            training: None,
            curves: None,
            losses: &[],
            examples: &[],
            points: &points,
            open_set: None,
        };
        let html = page.render();
        assert!(html.len() < 10_000_000, "{} bytes", html.len());
        assert!(html.contains("class=\"matrix\"") && html.contains("Most confused"));
        assert_eq!(
            html.matches("<td>a fairly long class name").count(),
            1000 + 2 * 40,
            "every class in the table, 40 pairs"
        );
    }

    #[test]
    fn images_become_data_uris() {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([200, 10, 10]));
        assert!(jpeg_uri(&img, 80).starts_with("data:image/jpeg;base64,/9j/"));
        assert!(png_uri(&img).starts_with("data:image/png;base64,iVBORw0KGgo"));
    }
}
