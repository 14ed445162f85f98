//! Charts as inline SVG, written by hand: a line chart and a confusion heatmap are a few dozen
//! elements each, and the page must not load a script or a font to draw them.

use crate::html::escape;
use std::fmt::Write;

/// Distinct colours for classes and series (Tableau 10), reused in turn past ten.
pub const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// Tick values covering [lo, hi] at a 1-2-5 step, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= n as f64).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn label(v: f64) -> String {
    if v == v.round() && v.abs() < 1e6 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// A line chart; `mark` draws a vertical line at an x with its label (the kept step).
pub fn line_chart(x_label: &str, y_label: &str, series: &[Series], mark: Option<(f64, &str)>) -> String {
    let (w, h, left, right, top, bottom) = (520.0, 300.0, 56.0, 16.0, 16.0, 64.0);
    let all = || series.iter().flat_map(|s| s.points.iter());
    let fold = |f: fn(&(f64, f64)) -> f64| {
        all()
            .map(f)
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
    };
    let (mut x0, mut x1) = fold(|p| p.0);
    let (mut y0, mut y1) = fold(|p| p.1);
    if !x0.is_finite() {
        return String::new();
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    y0 = y0.min(0.0);
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    y1 += (y1 - y0) * 0.05;
    x0 = x0.min(0.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" class="chart" role="img">"#
    );
    for t in ticks(y0, y1, 5) {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            w - right,
            left - 6.0,
            sy(t) + 4.0,
            label(t),
            y = sy(t)
        );
    }
    for t in ticks(x0, x1, 6) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
            sx(t),
            top + ph + 16.0,
            label(t)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="#888"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#888"/>"##,
        top + ph,
        w - right,
        top + ph,
        top + ph
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle" class="axis">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="axis">{}</text>"#,
        left + pw / 2.0,
        top + ph + 34.0,
        escape(x_label),
        top + ph / 2.0,
        escape(y_label)
    );
    if let Some((x, text)) = mark {
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#555" stroke-dasharray="3 3"/><text x="{:.1}" y="{}" class="tick">{}</text>"##,
            top + ph,
            sx(x) + 4.0,
            top + 12.0,
            escape(text),
            x = sx(x)
        );
    }
    for (i, series) in series.iter().enumerate() {
        let pts: Vec<String> = series
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let dash = if series.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            series.colour,
            pts.join(" ")
        );
        if pts.len() == 1 {
            let (x, y) = series.points[0];
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#, sx(x), sy(y), series.colour);
        }
        let lx = left + 8.0 + i as f64 * 150.0;
        let ly = h - 12.0;
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{ly}" class="tick">{}</text>"#,
            lx + 22.0,
            ly - 4.0,
            ly - 4.0,
            series.colour,
            lx + 28.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The confusion matrix as a heatmap: rows true, columns predicted, each cell shaded by its
/// share of the row (so a rare class's errors show as clearly as a common one's) and labelled
/// with its count when there is room.
pub fn confusion(matrix: &[Vec<usize>], names: &[String]) -> String {
    let k = names.len();
    if k > SVG_CLASSES {
        return confusion_raster(matrix);
    }
    let cell = (560.0 / k as f64).clamp(10.0, 80.0);
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).min(24) as f64;
    let margin = 16.0 + longest * 7.0;
    let (w, h) = (margin + cell * k as f64 + 16.0, margin + cell * k as f64 + 16.0);
    let short = |n: &str| {
        if n.chars().count() > 24 {
            format!("{}…", n.chars().take(23).collect::<String>())
        } else {
            n.into()
        }
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" class="chart" role="img">"#
    );
    let font = (cell * 0.38).clamp(7.0, 13.0);
    for (t, row) in matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &c) in row.iter().enumerate() {
            let [r, g, b] = shade(t == p, c, total);
            let (x, y) = (margin + p as f64 * cell, margin + t as f64 * cell);
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({r},{g},{b})" stroke="#fff"><title>true {} → predicted {}: {c} of {total}</title></rect>"##,
                escape(&names[t]),
                escape(&names[p])
            );
            if cell >= 18.0 && c > 0 {
                let ink = if t == p && c * 5 > total * 3 { "#fff" } else { "#222" };
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="{font:.0}" fill="{ink}">{c}</text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0 + font / 3.0
                );
            }
        }
    }
    if cell >= 10.0 {
        for (i, n) in names.iter().enumerate() {
            let c = margin + (i as f64 + 0.5) * cell;
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tick" font-size="{font:.0}">{}</text><text transform="translate({c:.1} {:.1}) rotate(-90)" text-anchor="start" class="tick" font-size="{font:.0}">{}</text>"#,
                margin - 4.0,
                c + font / 3.0,
                escape(&short(n)),
                margin - 4.0,
                escape(&short(n))
            );
        }
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="12" text-anchor="middle" class="axis">predicted</text><text transform="translate(12 {:.1}) rotate(-90)" text-anchor="middle" class="axis">true</text>"#,
        margin + cell * k as f64 / 2.0,
        margin + cell * k as f64 / 2.0
    );
    s.push_str("</svg>");
    s
}

/// Above this many classes the matrix is a picture (one pixel a cell, scaled up without
/// smoothing), not an SVG element per cell: the page stays small (the square of the classes
/// in elements would be tens of megabytes), and the most confused pairs are listed beside it.
pub const SVG_CLASSES: usize = 60;

/// A cell's colour: white to deep blue on the diagonal, to red off it, by the share of its row.
fn shade(diagonal: bool, count: usize, row_total: usize) -> [u8; 3] {
    let share = if row_total > 0 { count as f64 / row_total as f64 } else { 0.0 };
    let [r, g, b] = if diagonal {
        [255.0 - 200.0 * share, 255.0 - 150.0 * share, 255.0 - 60.0 * share]
    } else {
        [255.0 - 30.0 * share.sqrt(), 255.0 - 200.0 * share.sqrt(), 255.0 - 200.0 * share.sqrt()]
    };
    [r.round() as u8, g.round() as u8, b.round() as u8]
}

fn confusion_raster(matrix: &[Vec<usize>]) -> String {
    let k = matrix.len() as u32;
    let totals: Vec<usize> = matrix.iter().map(|row| row.iter().sum()).collect();
    let img = image::RgbImage::from_fn(k, k, |p, t| {
        let count = matrix[t as usize].get(p as usize).copied().unwrap_or(0);
        image::Rgb(shade(t == p, count, totals[t as usize]))
    });
    format!(
        "<figure class=\"matrix\"><img src=\"{}\" width=\"{k}\" height=\"{k}\" alt=\"confusion matrix of {k} classes, one pixel a cell\">\
         <figcaption>{k} × {k}: rows true, columns predicted, classes in the order of the table above</figcaption></figure>",
        retrain_explain::png_uri(&img)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(ticks(0.0, 600.0, 6), vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]);
    }

    #[test]
    fn confusion_cells_carry_counts_and_names() {
        let names = vec!["ants".to_string(), "bees & <wasps>".to_string()];
        let s = confusion(&[vec![60, 10], vec![5, 78]], &names);
        assert_eq!(s.matches("<rect").count(), 4);
        assert!(s.contains("true ants → predicted bees &amp; &lt;wasps&gt;: 10 of 70"));
        assert!(s.contains(">78</text>"));
    }

    #[test]
    fn many_classes_are_one_picture_with_a_pixel_a_cell() {
        let k = 1000;
        let m: Vec<Vec<usize>> = (0..k)
            .map(|t| (0..k).map(|p| if p == t { 8 } else { usize::from((t * 7 + p) % 97 == 0) }).collect())
            .collect();
        let names: Vec<String> = (0..k).map(|i| format!("class {i}")).collect();
        let s = confusion(&m, &names);
        assert!(!s.contains("<rect") && s.contains("data:image/png;base64,"), "{}", &s[..200]);
        assert!(s.len() < 1_000_000, "{} bytes", s.len());
        let b64 = s.split("base64,").nth(1).unwrap().split('"').next().unwrap();
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1000, 1000));
        assert_eq!(img.get_pixel(3, 3).0, shade(true, 8, m[3].iter().sum()));
        assert_eq!(img.get_pixel(3, 4).0, [255, 255, 255], "row 4, column 3: no photo");
        assert_ne!(img.get_pixel(97, 0).0, [255, 255, 255], "row 0, column 97: one photo");
    }
}
