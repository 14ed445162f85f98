use crate::cam::{upsample, Explanation};
use base64::Engine;
use font8x8::UnicodeFonts;
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
    let text = 2; // glyph scale: 16-pixel letters
    let line = 8 * text + 8;
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
    draw_text(&mut img, 2 * PAD + 2 * panel - (most.len() as u32) * 8 * text, under, most, text, MUTED);
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

/// Writes `s` with 8×8 glyphs scaled by `scale`, clipped to the image; characters the font
/// lacks are drawn as `?`.
pub(crate) fn draw_text(img: &mut RgbImage, x: u32, y: u32, s: &str, scale: u32, ink: Rgb<u8>) {
    let fallback = font8x8::BASIC_FONTS.get('?').unwrap_or([0; 8]);
    for (n, ch) in s.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::LATIN_FONTS.get(ch)).unwrap_or(fallback);
        let gx = x + n as u32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (gx + col * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, ink);
                        }
                    }
                }
            }
        }
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
