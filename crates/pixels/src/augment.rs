//! Training-time augmentation on decoded images: random resized crop, horizontal flip and a
//! small colour jitter (torchvision's `RandomResizedCrop`, `RandomHorizontalFlip`,
//! `ColorJitter`). Every draw comes from a generator seeded per image and epoch, so a run and
//! its resumed continuation see the same pixels.

use crate::resample::resize_rgb8;
use crate::Geometry;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// How strongly to augment (`--augment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// The backbone's deterministic preprocessing (resize + centre crop).
    None,
    /// Crops of 35–100% of the photo, flips.
    Light,
    /// Crops of 25–100% of the photo, flips, ±20% brightness/contrast/saturation.
    Standard,
}

impl Augment {
    fn params(self) -> Option<(f64, f32)> {
        match self {
            Augment::None => None,
            Augment::Light => Some((0.35, 0.0)),
            Augment::Standard => Some((0.25, 0.2)),
        }
    }
}

/// splitmix64: small, fast and good enough for augmentation draws.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one (seed, epoch, image) triple.
    pub fn for_item(seed: u64, epoch: u64, item: u64) -> Self {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        let a = r.next_u64() ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut r = Rng(a);
        let b = r.next_u64() ^ item.wrapping_mul(0xAEF1_7502_108E_F2D9);
        Rng(b)
    }
    /// A generator whose `k`-th draw (0-based) is splitmix64 of `state + (k + 1)·γ`: for draws
    /// keyed by something other than an image (e.g. a training step's dropout mask).
    pub fn from_state(state: u64) -> Self {
        Rng(state)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// torchvision's `RandomResizedCrop.get_params`: a region of `scale` of the area and aspect
/// ratio in [3/4, 4/3] (log-uniform), ten tries, then the centre crop as the fallback.
fn crop_box(w: u32, h: u32, min_scale: f64, rng: &mut Rng) -> (u32, u32, u32, u32) {
    let area = (w as f64) * (h as f64);
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.range(min_scale, 1.0);
        let ratio = rng.range(lr0, lr1).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let x = (rng.uniform() * (w - cw + 1) as f64) as u32;
            let y = (rng.uniform() * (h - ch + 1) as f64) as u32;
            return (x.min(w - cw), y.min(h - ch), cw, ch);
        }
    }
    let ratio = w as f64 / h as f64;
    let (cw, ch) = if ratio < 3.0 / 4.0 {
        (w, ((w as f64) / (3.0 / 4.0)).round() as u32)
    } else if ratio > 4.0 / 3.0 {
        (((h as f64) * (4.0 / 3.0)).round() as u32, h)
    } else {
        (w, h)
    };
    let (cw, ch) = (cw.clamp(1, w), ch.clamp(1, h));
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// The augmented `crop`² RGB bytes (HWC) for one decoded image; [`Augment::None`] gives the
/// deterministic preprocessing ([`crate::prepare`]).
pub fn augmented(img: &RgbImage, g: Geometry, aug: Augment, rng: &mut Rng) -> Vec<u8> {
    let Some((min_scale, jitter)) = aug.params() else {
        return crate::prepare(img, g);
    };
    let (x, y, cw, ch) = crop_box(img.width(), img.height(), min_scale, rng);
    let region = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
    let c = g.crop as usize;
    let mut px = resize_rgb8(region.as_raw(), cw as usize, ch as usize, c, c, g.filter);
    if rng.uniform() < 0.5 {
        for row in px.chunks_exact_mut(c * 3) {
            for i in 0..c / 2 {
                for k in 0..3 {
                    row.swap(i * 3 + k, (c - 1 - i) * 3 + k);
                }
            }
        }
    }
    if jitter > 0.0 {
        let j = jitter as f64;
        let (b, ct, s) = (rng.range(1.0 - j, 1.0 + j), rng.range(1.0 - j, 1.0 + j), rng.range(1.0 - j, 1.0 + j));
        color_jitter(&mut px, b as f32, ct as f32, s as f32);
    }
    px
}

/// Brightness, contrast (around the mean grey level), saturation (around each pixel's grey),
/// in that order, as torchvision's `adjust_*` functions define them.
fn color_jitter(px: &mut [u8], brightness: f32, contrast: f32, saturation: f32) {
    let grey = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut f: Vec<f32> = px.iter().map(|&v| (v as f32 * brightness).clamp(0.0, 255.0)).collect();
    let mean = f.chunks_exact(3).map(grey).sum::<f32>() / (f.len() / 3).max(1) as f32;
    for v in f.iter_mut() {
        *v = ((*v - mean) * contrast + mean).clamp(0.0, 255.0);
    }
    for p in f.chunks_exact_mut(3) {
        let g = grey(p);
        for v in p.iter_mut() {
            *v = ((*v - g) * saturation + g).clamp(0.0, 255.0);
        }
    }
    for (o, v) in px.iter_mut().zip(f) {
        *o = v.round() as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::Filter;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]))
    }

    const G: Geometry = Geometry { resize: 64, crop: 56, filter: Filter::Bilinear };

    #[test]
    fn none_is_the_deterministic_preprocessing() {
        let img = gradient(120, 90);
        assert_eq!(augmented(&img, G, Augment::None, &mut Rng::for_item(1, 2, 3)), crate::prepare(&img, G));
    }

    #[test]
    fn same_seed_same_pixels_other_epoch_other_pixels() {
        let img = gradient(120, 90);
        let a = augmented(&img, G, Augment::Standard, &mut Rng::for_item(7, 1, 5));
        let b = augmented(&img, G, Augment::Standard, &mut Rng::for_item(7, 1, 5));
        let c = augmented(&img, G, Augment::Standard, &mut Rng::for_item(7, 2, 5));
        assert_eq!(a.len(), 56 * 56 * 3);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn crops_stay_inside_and_cover_the_asked_area() {
        let mut rng = Rng::for_item(0, 0, 0);
        let mut areas = Vec::new();
        for _ in 0..500 {
            let (x, y, w, h) = crop_box(400, 300, 0.25, &mut rng);
            assert!(x + w <= 400 && y + h <= 300 && w > 0 && h > 0);
            areas.push((w * h) as f64 / 120_000.0);
        }
        let min = areas.iter().cloned().fold(1.0, f64::min);
        let mean = areas.iter().sum::<f64>() / areas.len() as f64;
        assert!(min >= 0.24, "{min}");
        assert!(mean > 0.45 && mean < 0.75, "{mean}");
    }

    #[test]
    fn flips_happen_about_half_the_time() {
        // A left-dark, right-bright image: flipped crops are bright on the left.
        let img = gradient(200, 200);
        let flipped = (0..200)
            .filter(|&i| {
                let px = augmented(&img, G, Augment::Light, &mut Rng::for_item(3, 0, i));
                px[0] > px[(56 - 1) * 3]
            })
            .count();
        assert!((70..130).contains(&flipped), "{flipped}");
    }

    #[test]
    fn jitter_keeps_grey_grey_and_scales_brightness() {
        let mut px = vec![100u8; 12];
        color_jitter(&mut px, 1.2, 1.0, 0.5);
        assert!(px.iter().all(|&v| v == 120), "{px:?}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::for_item(1, 1, 0).permutation(100);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }
}
