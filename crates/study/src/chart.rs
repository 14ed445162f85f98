//! The learning curves as inline SVG (accuracy against photos per class, log x, one line per
//! backbone and strategy, a band for the spread of the repeats), on a page with no script.

use crate::Study;
use std::fmt::Write;

const PALETTE: [&str; 8] = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The chart: x is photos per class (for `all`, the training split's mean per class).
pub fn svg(study: &Study) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 56.0, 180.0, 16.0, 48.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let classes = study.classes.len().max(1) as f64;
    let x_of = |c: &crate::Cell| c.train_images / classes;
    let xs: Vec<f64> = study.summary.iter().map(x_of).filter(|x| *x > 0.0).collect();
    if xs.is_empty() {
        return String::new();
    }
    let (x0, x1) = xs.iter().fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    let (lx0, lx1) = (x0.max(1.0).log10().floor(), (x1 * 1.5).log10().max(x0.max(1.0).log10().floor() + 1.0));
    let chance = 1.0 / classes;
    let y0 = study.summary.iter().map(|c| c.val_accuracy - c.val_accuracy_sd).fold(chance, f64::min).clamp(0.0, 1.0);
    let y0 = (y0 * 10.0).floor() / 10.0;
    let sx = |x: f64| left + (x.max(1e-9).log10() - lx0) / (lx1 - lx0) * pw;
    let sy = |y: f64| top + ph - (y.clamp(y0, 1.0) - y0) / (1.0 - y0).max(1e-9) * ph;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" font-family="sans-serif" font-size="11">"#
    );
    let mut y = y0;
    while y <= 1.0 + 1e-9 {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end">{y:.1}</text>"##,
            left + pw,
            left - 6.0,
            sy(y) + 4.0,
            py = sy(y)
        );
        y += 0.1;
    }
    let mut d = lx0;
    while d <= lx1 + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(d);
            if v.log10() > lx1 + 1e-9 {
                break;
            }
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{}" stroke="#f0f0f0"/><text x="{px:.1}" y="{}" text-anchor="middle">{v}</text>"##,
                top + ph,
                top + ph + 16.0,
                px = sx(v)
            );
        }
        d += 1.0;
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{}" y1="{cy:.1}" y2="{cy:.1}" stroke="#999" stroke-dasharray="4 4"/><text x="{}" y="{:.1}" fill="#777">chance</text>"##,
        left + pw,
        left + 4.0,
        sy(chance) - 4.0,
        cy = sy(chance)
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{}" text-anchor="middle">training photos per class (log scale)</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">validation accuracy</text><rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##,
        left + pw / 2.0,
        h - 8.0,
        top + ph / 2.0
    );
    let mut lines: Vec<(String, retrain::Strategy)> =
        study.summary.iter().map(|c| (c.model.clone(), c.strategy)).collect();
    lines.dedup();
    for (i, (model, strategy)) in lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut cells: Vec<&crate::Cell> =
            study.summary.iter().filter(|c| &c.model == model && c.strategy == *strategy).collect();
        cells.sort_by(|a, b| x_of(a).total_cmp(&x_of(b)));
        let upper: Vec<String> =
            cells.iter().map(|c| format!("{:.1},{:.1}", sx(x_of(c)), sy(c.val_accuracy + c.val_accuracy_sd))).collect();
        let lower: Vec<String> = cells
            .iter()
            .rev()
            .map(|c| format!("{:.1},{:.1}", sx(x_of(c)), sy(c.val_accuracy - c.val_accuracy_sd)))
            .collect();
        let _ = write!(
            s,
            r#"<polygon points="{} {}" fill="{colour}" fill-opacity="0.15"/>"#,
            upper.join(" "),
            lower.join(" ")
        );
        let pts: Vec<String> = cells.iter().map(|c| format!("{:.1},{:.1}", sx(x_of(c)), sy(c.val_accuracy))).collect();
        let dash = if *strategy == retrain::Strategy::Scratch { r#" stroke-dasharray="6 4""# } else { "" };
        let _ =
            write!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#, pts.join(" "));
        for c in &cells {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{} {} {} per class: {:.3} ± {:.3}</title></circle>"#,
                sx(x_of(c)),
                sy(c.val_accuracy),
                escape(model),
                strategy.name(),
                c.shots,
                c.val_accuracy,
                c.val_accuracy_sd
            );
        }
        let ly = top + 12.0 + i as f64 * 18.0;
        let lx = left + pw + 12.0;
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{} {}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(model),
            strategy.name()
        );
    }
    s.push_str("</svg>");
    s
}

/// `--layers`: per backbone, each stage's accuracy with a bar.
fn layers_table(study: &Study) -> String {
    if study.layers.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for l in &study.layers {
        let _ = write!(
            rows,
            r#"<tr><td>{}</td><td>{}</td><td>{}×{}×{}</td><td>{:.3}</td><td style="text-align:left"><svg width="200" height="12"><rect width="{:.0}" height="12" fill="{}"/></svg></td></tr>"#,
            escape(&l.model),
            l.stage,
            l.channels,
            l.size,
            l.size,
            l.val_accuracy,
            200.0 * l.val_accuracy,
            PALETTE[0]
        );
    }
    format!(
        "<h2>Layer by layer</h2><p>The linear head on each stage's globally pooled map, all training photos \
         (<code>retrain train --cut STAGE</code> trains on one).</p><table><tr><th>backbone</th><th>stage</th>\
         <th>map</th><th>val accuracy</th><th></th></tr>{rows}</table>"
    )
}

/// The page: title, reading, chart, summary table.
pub fn page(study: &Study) -> String {
    let mut rows = String::new();
    for c in &study.summary {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.1}</td></tr>",
            escape(&c.model),
            c.strategy.name(),
            c.shots,
            c.train_images,
            c.runs,
            c.val_accuracy,
            c.val_accuracy_sd,
            c.seconds
        );
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>retrain study: {data}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}}td:first-child,td:nth-child(2),th{{text-align:left}}p.reading{{font-size:1.1rem;line-height:1.5}}</style></head>
<body><h1>How many photos, which strategy, which backbone</h1>
<p>{data} · {classes} · {val} validation photos ({split}); training subsets drawn at random per class, the same photos for every backbone and strategy.</p>
<p class="reading">{reading}</p>
{chart}
<h2>Every cell</h2><table><tr><th>backbone</th><th>strategy</th><th>photos/class</th><th>train photos</th><th>runs</th><th>val accuracy</th><th>sd</th><th>seconds</th></tr>{rows}</table>
{layers}
<p>The linear head trains for its configured steps on cached features; the validation photos only score it. Fine-tuning and training from scratch keep their epoch of lowest validation loss, as <code>retrain train</code> does.</p>
</body></html>"#,
        data = escape(&study.data_dir.display().to_string()),
        classes = escape(&study.classes.join(", ")),
        val = study.val_images,
        split = escape(&study.split),
        reading = escape(&study.reading),
        chart = svg(study),
        layers = layers_table(study),
    )
}
