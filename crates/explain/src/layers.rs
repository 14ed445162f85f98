//! What the layers see: the backbone's stages found from the model file alone (the last value
//! at each spatial resolution, early to late), their most active channels on one photo, and the
//! first convolution's filters.

use crate::render::{colour, draw_text, text_width, INK, MUTED, PAD, TEXT, WHITE};
use crate::Result;
use image::{Rgb, RgbImage};
use retrain_pixels::{Limits, PixelError};
use serde::Serialize;
use std::path::Path;

/// Channels shown per stage.
pub const SHOWN: usize = 8;

/// One stage of the backbone on one photo.
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    /// The graph value that ends the stage.
    pub value: String,
    /// [height, width] of its maps.
    pub size: [usize; 2],
    pub channels: usize,
    /// The most active channels (by mean activation), most active first.
    pub top_channels: Vec<usize>,
    #[serde(skip)]
    pub maps: Vec<Vec<f32>>,
}

/// The first convolution's filters: `count` of `3`×`k`×`k`.
#[derive(Clone, Debug)]
pub struct Filters {
    pub count: usize,
    pub k: usize,
    pub weights: Vec<f32>,
}

pub struct Layers {
    pub stages: Vec<Stage>,
    pub filters: Option<Filters>,
    /// The crop the model saw.
    pub pixels: Vec<u8>,
    pub crop: usize,
}

/// Runs `image` through the model at `path` and keeps its stages ([`retrain::stages::find`]):
/// for each spatial size from the largest down, the last map of that size.
pub fn layers(path: &Path, image: &Path, threads: usize, limits: Limits) -> Result<Result<Layers, PixelError>> {
    let (bytes, info) = retrain::model::read(path)?;
    let model = retrain_onnx::decode(&bytes, path).map_err(retrain::Error::from)?;
    let filters = model.graph.as_ref().and_then(first_filters);
    let crop = info.preprocess.crop as usize;
    let pixels = match retrain_pixels::load(image, info.geometry(), limits) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let found = retrain::stages::find(&model, &pixels, crop, &path.display().to_string(), threads)?;
    let stages = found
        .into_iter()
        .map(|s| {
            let hw = s.size[0] * s.size[1];
            let means: Vec<f32> =
                (0..s.channels).map(|k| s.data[k * hw..(k + 1) * hw].iter().sum::<f32>() / hw as f32).collect();
            let mut top: Vec<usize> = (0..s.channels).collect();
            top.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
            top.truncate(SHOWN);
            let maps = top.iter().map(|&k| s.data[k * hw..(k + 1) * hw].to_vec()).collect();
            Stage { value: s.value, size: s.size, channels: s.channels, top_channels: top, maps }
        })
        .collect();
    Ok(Ok(Layers { stages, filters, pixels, crop }))
}

/// The weights of the first convolution that reads three channels, when they are plain floats.
fn first_filters(graph: &retrain_onnx::proto::GraphProto) -> Option<Filters> {
    graph.node.iter().filter(|n| n.op_type == "Conv").find_map(|n| {
        let (shape, weights) = retrain_onnx::initializer_f32(graph, n.input.get(1)?)?;
        (shape.len() == 4 && shape[1] == 3 && shape[2] == shape[3]).then(|| Filters {
            count: shape[0],
            k: shape[2],
            weights,
        })
    })
}

/// One picture per stage: the crop, then its most active channels' maps (each scaled to its own
/// range, dark to bright).
pub fn render_stage(l: &Layers, index: usize) -> RgbImage {
    let s = &l.stages[index];
    let tile = 112u32;
    let line = 24;
    let cols = 1 + s.maps.len() as u32;
    let width = PAD + cols * (tile + PAD);
    let height = PAD + 2 * line + tile + PAD;
    let mut img = RgbImage::from_pixel(width, height, WHITE);
    let title =
        format!("stage {} of {}: {}x{}, {} channels", index + 1, l.stages.len(), s.size[0], s.size[1], s.channels);
    draw_text(&mut img, PAD, PAD, &title, TEXT, INK);
    draw_text(
        &mut img,
        PAD,
        PAD + line,
        &format!("the photo, then its {} most active channels", s.maps.len()),
        TEXT,
        MUTED,
    );
    let top = PAD + 2 * line;
    let c = l.crop;
    for y in 0..tile {
        for x in 0..tile {
            let i = (y as usize * c / tile as usize) * c + x as usize * c / tile as usize;
            img.put_pixel(PAD + x, top + y, Rgb([l.pixels[i * 3], l.pixels[i * 3 + 1], l.pixels[i * 3 + 2]]));
        }
    }
    for (n, map) in s.maps.iter().enumerate() {
        let (lo, hi) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let rows: Vec<Vec<f32>> =
            map.chunks(s.size[1]).map(|r| r.iter().map(|v| (v - lo) / (hi - lo).max(1e-6)).collect()).collect();
        let up = crate::cam::upsample(&rows, tile as usize);
        let x0 = PAD + (n as u32 + 1) * (tile + PAD);
        for y in 0..tile {
            for x in 0..tile {
                let v = colour(up[(y * tile + x) as usize]);
                img.put_pixel(x0 + x, top + y, Rgb(v.map(|c| c.round() as u8)));
            }
        }
    }
    img
}

/// The first convolution's filters as a grid of colour patches (each filter scaled to its own
/// largest weight, grey for zero).
pub fn render_filters(f: &Filters) -> RgbImage {
    let cell = (48 / f.k).max(4) as u32;
    let side = f.k as u32 * cell;
    let cols = (f.count as f32).sqrt().ceil() as u32;
    let rows = (f.count as u32).div_ceil(cols);
    let line = 24;
    let title = format!("first convolution: {} filters of {}x{}", f.count, f.k, f.k);
    let width = (PAD + cols * (side + 4)).max(2 * PAD + text_width(&title, TEXT));
    let height = PAD + 2 * line + rows * (side + 4) + PAD;
    let mut img = RgbImage::from_pixel(width, height, WHITE);
    draw_text(&mut img, PAD, PAD, &title, TEXT, INK);
    draw_text(&mut img, PAD, PAD + line, "what the first layer looks for", TEXT, MUTED);
    let kk = f.k * f.k;
    for o in 0..f.count {
        let w = &f.weights[o * 3 * kk..(o + 1) * 3 * kk];
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let (gx, gy) = (o as u32 % cols, o as u32 / cols);
        let (x0, y0) = (PAD + gx * (side + 4), PAD + 2 * line + gy * (side + 4));
        for y in 0..side {
            for x in 0..side {
                let (ky, kx) = ((y / cell) as usize, (x / cell) as usize);
                let px: [u8; 3] =
                    std::array::from_fn(|ch| (127.5 + 127.5 * w[ch * kk + ky * f.k + kx] / scale).round() as u8);
                img.put_pixel(x0 + x, y0 + y, Rgb(px));
            }
        }
    }
    img
}
