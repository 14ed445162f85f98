use crate::cam::{upsample, Explanation};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use base64::Engine;
use image::{Rgb, RgbImage};

/// Inferno's colours at 0, ¼, ½, ¾ and 1: dark for no evidence, bright yellow for the most.
const STOPS: [[f32; 3]; 5] =
    [[0.0, 0.0, 4.0], [87.0, 16.0, 110.0], [188.0, 55.0, 84.0], [249.0, 142.0, 9.0], [252.0, 255.0, 164.0]];

pub fn colour(v: f32) -> [f32; 3] {
    let t = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f)
}

pub(crate) const PAD: u32 = 12;
pub(crate) const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub(crate) const INK: Rgb<u8> = Rgb([20, 20, 20]);
pub(crate) const MUTED: Rgb<u8> = Rgb([90, 90, 90]);

/// The picture of one explanation: the crop the model saw and the heatmap blended over it, side
/// by side, the top classes above them and a colour scale below.
pub fn render(e: &Explanation) -> RgbImage {
    let size = e.crop.size[0];
    // Small crops are shown twice as large: a 224-pixel crop is hard to read at 1:1.
    let zoom = if size <= 320 { 2 } else { 1 };
    let panel = (size * zoom) as u32;
    let text = TEXT;
    let line = (text * 1.5) as u32;
    let (top, bar) = (PAD + 2 * line + 4, 14);
    let width = 3 * PAD + 2 * panel;
    let height = top + panel + PAD + bar + 4 + line + PAD;
    let mut img = RgbImage::from_pixel(width, height, WHITE);

    let ranked: Vec<String> = e.top.iter().map(|r| format!("{} {:.1}%", r.class, 100.0 * r.probability)).collect();
    draw_text(&mut img, PAD, PAD, &ranked.join("   "), text, INK);
    draw_text(
        &mut img,
        PAD,
        PAD + line,
        &format!("where the evidence for \"{}\" is ({})", e.class, e.method),
        text,
        MUTED,
    );

    let blended = overlay(e);
    for y in 0..panel {
        for x in 0..panel {
            let (sx, sy) = (x / zoom as u32, y / zoom as u32);
            let i = sy as usize * size + sx as usize;
            img.put_pixel(PAD + x, top + y, Rgb([e.pixels[i * 3], e.pixels[i * 3 + 1], e.pixels[i * 3 + 2]]));
            img.put_pixel(2 * PAD + panel + x, top + y, *blended.get_pixel(sx, sy));
        }
    }
    let y0 = top + panel + PAD;
    for x in 0..panel {
        let c = colour(x as f32 / (panel - 1) as f32);
        for y in 0..bar {
            img.put_pixel(2 * PAD + panel + x, y0 + y, Rgb(c.map(|v| v.round() as u8)));
        }
    }
    let under = y0 + bar + 4;
    draw_text(&mut img, 2 * PAD + panel, under, "none", text, MUTED);
    let most = "most evidence";
    draw_text(&mut img, (2 * PAD + 2 * panel).saturating_sub(text_width(most, text)), under, most, text, MUTED);
    draw_text(&mut img, PAD, y0, "what the model saw", text, MUTED);
    img
}

/// The crop with the heatmap blended over it, at the crop's size.
pub fn overlay(e: &Explanation) -> RgbImage {
    let size = e.crop.size[0];
    let heat = upsample(&e.heatmap, size);
    RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let i = y as usize * size + x as usize;
        let px = [e.pixels[i * 3], e.pixels[i * 3 + 1], e.pixels[i * 3 + 2]];
        // Mostly the photo where there is no evidence, mostly the colour where there is most.
        let (c, a) = (colour(heat[i]), 0.2 + 0.55 * heat[i]);
        Rgb(std::array::from_fn(|k| (px[k] as f32 * (1.0 - a) + c[k] * a).round() as u8))
    })
}

/// DejaVu Sans (fonts/LICENSE-DejaVu.txt): Latin, Greek and Cyrillic class names drawn as
/// they are written.
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: std::sync::OnceLock<FontRef<'static>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the embedded font parses"))
}

/// Letters `size` pixels high (the font's em), for a line of `size * 3 / 2`.
pub(crate) const TEXT: f32 = 17.0;

/// Each glyph of `s` at `size` with its pen position from the start of the line (kerning
/// applied), and the line's width.
fn layout(s: &str, size: f32) -> (Vec<(ab_glyph::GlyphId, f32)>, f32) {
    let scaled = font().as_scaled(PxScale::from(size));
    let (mut glyphs, mut pen, mut last) = (Vec::new(), 0.0, None);
    for ch in s.chars() {
        let id = scaled.glyph_id(ch);
        if let Some(prev) = last {
            pen += scaled.kern(prev, id);
        }
        glyphs.push((id, pen));
        pen += scaled.h_advance(id);
        last = Some(id);
    }
    (glyphs, pen)
}

/// The width in pixels of `s` drawn at `size`.
pub(crate) fn text_width(s: &str, size: f32) -> u32 {
    layout(s, size).1.ceil() as u32
}

/// Writes `s` at `size` pixels with its top at `y`, antialiased over what is there, clipped to
/// the image; characters the font lacks are drawn as its empty box.
pub(crate) fn draw_text(img: &mut RgbImage, x: u32, y: u32, s: &str, size: f32, ink: Rgb<u8>) {
    let scaled = font().as_scaled(PxScale::from(size));
    let baseline = y as f32 + scaled.ascent();
    for (id, pen) in layout(s, size).0 {
        let glyph = id.with_scale_and_position(scaled.scale(), ab_glyph::point(x as f32 + pen, baseline));
        let Some(outline) = font().outline_glyph(glyph) else { continue };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
            if px < 0 || py < 0 || px >= img.width() as i64 || py >= img.height() as i64 {
                return;
            }
            let under = img.get_pixel_mut(px as u32, py as u32);
            let a = coverage.clamp(0.0, 1.0);
            *under = Rgb(std::array::from_fn(|c| (under[c] as f32 * (1.0 - a) + ink[c] as f32 * a).round() as u8));
        });
    }
}

/// A photo as a data: URI (JPEG: photos and heatmaps are a tenth of their PNG size).
pub fn jpeg_uri(img: &image::RgbImage, quality: u8) -> String {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .expect("encoding into memory cannot fail");
    format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A picture with text or sharp edges (filters, layer strips) as a PNG data: URI.
pub fn png_uri(img: &image::RgbImage) -> String {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encoding into memory cannot fail");
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_runs_dark_to_bright() {
        let lum = |c: [f32; 3]| 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2];
        let steps: Vec<f32> = (0..=10).map(|i| lum(colour(i as f32 / 10.0))).collect();
        assert!(steps.windows(2).all(|w| w[1] > w[0]), "{steps:?}");
        assert_eq!(colour(-1.0), colour(0.0));
        assert_eq!(colour(2.0), STOPS[4]);
    }
}
