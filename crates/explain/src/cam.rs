use crate::{ExplainError, Result};
// The first of the largest, as `rank` orders ties, so the default class is the top one shown.
use rayon::prelude::*;
use retrain::metrics::argmax;
use retrain::model::ModelInfo;
use retrain::predict::{rank, Ranked};
use retrain_features::Session;
use retrain_onnx::ModelProto;
use retrain_pixels::{Limits, PixelError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How the evidence is located.
#[derive(Clone, Debug)]
pub enum Method {
    /// The spatial map `map` ([1, dim, h, w]) before global pooling, weighted by the head's
    /// `weight` ([classes, dim]).
    Cam { map: String, weight: Vec<f32>, dim: usize },
    /// Each cell of a `grid`×`grid` grid covered in turn: `grid`² more forward passes per photo.
    /// `features`: the vector the head reads, when the head is one Gemm.
    Occlusion { grid: usize, features: Option<String> },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Cam { .. } => "class activation map",
            Method::Occlusion { .. } => "occlusion",
        }
    }
}

/// Why one photo got its scores.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    /// The explained class.
    pub class: String,
    pub top: Vec<Ranked>,
    /// Where the evidence for `class` against the other classes lies, in [0, 1]: rows ×
    /// columns covering the center crop the model sees.
    pub heatmap: Vec<Vec<f32>>,
    pub crop: Crop,
    pub method: &'static str,
    /// The crop itself (RGB, row-major), what the picture shows.
    #[serde(skip)]
    pub pixels: Vec<u8>,
    #[serde(skip)]
    pub class_index: usize,
    /// Every class's probability.
    #[serde(skip)]
    pub probabilities: Vec<f32>,
    /// The features the head read: the map's mean with class activation maps; with occlusion
    /// the head's input, from scores-only runs (`heatmaps` false) of models whose head is a Gemm.
    #[serde(skip)]
    pub features: Option<Vec<f32>>,
    /// Higher = less like the training photos; from models that have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood_score: Option<f32>,
    /// Whether the photo is one of the classes, once the caller has a threshold
    /// ([`Explanation::judge`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<bool>,
}

impl Explanation {
    /// Sets `known` from `threshold` (none: nothing rejected).
    pub fn judge(&mut self, threshold: Option<f32>) {
        self.known = retrain::open_set::OpenSet::verdict(self.ood_score, threshold);
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Crop {
    /// [height, width]
    pub size: [usize; 2],
}

/// A model opened for explaining.
pub struct Explainer {
    pub info: ModelInfo,
    pub path: PathBuf,
    pub method: Method,
    pub limits: Limits,
    /// When false, occlusion models give scores with an empty heatmap from one forward pass per
    /// photo instead of 1 + grid² (the report scores every photo, then maps only the top losses).
    pub heatmaps: bool,
    session: Session,
}

/// Grey of ImageNet's mean colour: what occlusion and the deletion test paint with.
pub const GREY: [u8; 3] = [124, 116, 104];
const OCCLUSION_GRID: usize = 7;

/// A tensor as ONNX Runtime returns it: shape and row-major values.
type Tensor = (Vec<usize>, Vec<f32>);
/// One photo's explained class, logits, heatmap rows, pooled features (CAM only) and `ood_score`.
type Located = (usize, Vec<f32>, Vec<Vec<f32>>, Option<Vec<f32>>, Option<f32>);
const BATCH: usize = 16;

impl Explainer {
    /// Opens `path`; the class activation map when the head is linear on a globally pooled
    /// map, else occlusion (or occlusion when `occlusion` is asked for).
    pub fn open(path: &Path, threads: usize, occlusion: bool) -> Result<Self> {
        let (bytes, info) = retrain::model::read(path)?;
        let mut model = retrain_onnx::decode(&bytes, path).map_err(retrain::Error::from)?;
        let method = match cam_structure(&model, info.class_names.len()) {
            Some((map, weight, dim)) if !occlusion => {
                retrain_onnx::expose(&mut model, &map);
                Method::Cam { map, weight, dim }
            }
            _ => {
                let features = head_input(&model);
                if let Some(f) = &features {
                    retrain_onnx::expose(&mut model, f);
                }
                Method::Occlusion { grid: OCCLUSION_GRID, features }
            }
        };
        let session = Session::new(&retrain_onnx::encode(&model), &path.display().to_string(), threads)?;
        Ok(Self { info, path: path.to_path_buf(), method, limits: Limits::default(), heatmaps: true, session })
    }

    /// The index of a class by name.
    pub fn class_index(&self, class: &str) -> Result<usize> {
        self.info.class_names.iter().position(|c| c == class).ok_or_else(|| ExplainError::UnknownClass {
            model: self.path.clone(),
            class: class.into(),
            known: self.info.class_names.join(", "),
        })
    }

    fn crop(&self) -> usize {
        self.info.preprocess.crop as usize
    }

    /// Logits of raw crops (crop×crop RGB each), the named extra output when asked, and each
    /// crop's `ood_score` where the model has one.
    #[allow(clippy::type_complexity)]
    fn run(
        &mut self,
        crops: &[&[u8]],
        extra: Option<&str>,
    ) -> Result<(Vec<Vec<f32>>, Option<Tensor>, Vec<Option<f32>>)> {
        let size = self.crop();
        let pixels: Vec<u8> = crops.iter().flat_map(|c| c.iter().copied()).collect();
        let out = self.session.run(pixels, crops.len(), size)?;
        let mut logits = Vec::new();
        let mut map = None;
        let mut ood = vec![None; crops.len()];
        for (name, shape, data) in out {
            if name == retrain::open_set::OUTPUT && data.len() == crops.len() {
                ood = data.into_iter().map(Some).collect();
            } else if name == "logits" {
                logits = data.chunks(shape[1]).map(<[f32]>::to_vec).collect();
            } else if Some(name.as_str()) == extra {
                map = Some((shape, data));
            }
        }
        Ok((logits, map, ood))
    }

    /// The evidence for `class` on each crop: its margin (its logit less the mean logit), or a
    /// several-labels model's logit of that class alone.
    pub fn margins(&mut self, crops: &[&[u8]], class: usize) -> Result<Vec<f32>> {
        let mut all = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(BATCH) {
            let logits = self.run(chunk, None)?.0;
            all.extend(logits.iter().map(|l| self.evidence(l, class)));
        }
        Ok(all)
    }

    fn evidence(&self, logits: &[f32], class: usize) -> f32 {
        match self.info.multi_label {
            Some(_) => logits[class],
            None => margin(logits, class),
        }
    }

    /// Explains each file, in order, for `class` (default: each photo's top class); a file
    /// that cannot be decoded gets its error in its slot.
    pub fn explain(
        &mut self,
        files: &[PathBuf],
        class: Option<usize>,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<std::result::Result<Explanation, PixelError>>> {
        let g = self.info.geometry();
        let limits = self.limits;
        progress.set_length(files.len() as u64);
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(BATCH) {
            let loaded: Vec<_> = chunk.par_iter().map(|p| retrain_pixels::load(p, g, limits)).collect();
            let ok: Vec<&[u8]> = loaded.iter().filter_map(|r| r.as_ref().ok().map(Vec::as_slice)).collect();
            let mut done = self.locate(&ok, class)?.into_iter();
            for (path, r) in chunk.iter().zip(loaded) {
                out.push(
                    r.map(|pixels| self.explanation(path.clone(), pixels, done.next().expect("one per decoded photo"))),
                );
                progress.inc(1);
            }
        }
        Ok(out)
    }

    /// Explains one crop already prepared (crop×crop RGB), e.g. an uploaded photo; `name` is
    /// what the explanation calls it.
    pub fn explain_crop(&mut self, name: &Path, pixels: Vec<u8>, class: Option<usize>) -> Result<Explanation> {
        let located = self.locate(&[&pixels], class)?.into_iter().next().expect("one per crop");
        Ok(self.explanation(name.to_path_buf(), pixels, located))
    }

    fn locate(&mut self, ok: &[&[u8]], class: Option<usize>) -> Result<Vec<Located>> {
        Ok(match &self.method {
            Method::Cam { .. } if !ok.is_empty() => self.cam(ok, class)?,
            Method::Occlusion { features, .. } if !ok.is_empty() && !self.heatmaps => {
                let features = features.clone();
                let (logits, f, ood) = self.run(ok, features.as_deref())?;
                let dim = f.as_ref().map_or(0, |(_, d)| d.len() / ok.len().max(1));
                logits
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let row = f.as_ref().map(|(_, d)| d[i * dim..(i + 1) * dim].to_vec());
                        (class.unwrap_or_else(|| argmax(&l)), l, Vec::new(), row, ood[i])
                    })
                    .collect()
            }
            Method::Occlusion { grid, .. } if !ok.is_empty() => {
                let grid = *grid;
                ok.iter().map(|c| self.occlusion(c, class, grid)).collect::<Result<Vec<_>>>()?
            }
            _ => Vec::new(),
        })
    }

    fn explanation(&self, path: PathBuf, pixels: Vec<u8>, located: Located) -> Explanation {
        let (class_index, logits, heatmap, features, ood_score) = located;
        // As the model's `probabilities`: its temperature applied; independent sigmoids for a
        // several-labels model.
        let probabilities = match self.info.multi_label {
            Some(_) => logits.iter().map(|&l| retrain_head::sigmoid(l)).collect(),
            None => {
                let t = self.info.open_set.as_ref().map_or(1.0, |o| o.temperature);
                retrain_head::softmax(&logits.iter().map(|l| l / t).collect::<Vec<_>>())
            }
        };
        let size = self.crop();
        Explanation {
            path,
            class: self.info.class_names[class_index].clone(),
            top: rank(&probabilities, &self.info.class_names, 3),
            heatmap,
            crop: Crop { size: [size, size] },
            method: self.method.name(),
            pixels,
            class_index,
            probabilities,
            features,
            ood_score,
            known: None,
        }
    }

    /// One forward pass for the batch; each map is Σ_k (W_ck − mean_j W_jk) A_k(y, x) (W_ck
    /// alone for a several-labels model).
    fn cam(&mut self, crops: &[&[u8]], class: Option<usize>) -> Result<Vec<Located>> {
        let Method::Cam { map, weight, dim } = self.method.clone() else { unreachable!("called for CAM") };
        let (logits, a, ood) = self.run(crops, Some(&map))?;
        let (shape, a) = a.ok_or_else(|| retrain::Error::NotAModel {
            path: self.path.clone(),
            reason: format!("`{map}` did not come out of the model"),
        })?;
        let (h, w) = (shape[2], shape[3]);
        let classes = weight.len() / dim;
        // A softmax's classes compete, so the evidence is against the others' mean; a sigmoid's
        // class stands alone.
        let mean: Vec<f32> = match self.info.multi_label {
            Some(_) => vec![0.0; dim],
            None => (0..dim).map(|k| (0..classes).map(|j| weight[j * dim + k]).sum::<f32>() / classes as f32).collect(),
        };
        Ok(logits
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let c = class.unwrap_or_else(|| argmax(&l));
                let wd: Vec<f32> = (0..dim).map(|k| weight[c * dim + k] - mean[k]).collect();
                let img = &a[i * dim * h * w..(i + 1) * dim * h * w];
                let mut cam = vec![0f32; h * w];
                for (k, wk) in wd.iter().enumerate() {
                    for (m, v) in cam.iter_mut().zip(&img[k * h * w..(k + 1) * h * w]) {
                        *m += wk * v;
                    }
                }
                let pooled = (0..dim).map(|k| img[k * h * w..(k + 1) * h * w].iter().sum::<f32>() / (h * w) as f32);
                (c, l, normalise(&cam, h, w), Some(pooled.collect()), ood[i])
            })
            .collect())
    }

    /// The margin lost when each grid cell is painted grey.
    fn occlusion(&mut self, crop: &[u8], class: Option<usize>, grid: usize) -> Result<Located> {
        let size = self.crop();
        let (logits, _, ood) = self.run(&[crop], None)?;
        let l = logits.into_iter().next().unwrap_or_default();
        let c = class.unwrap_or_else(|| argmax(&l));
        let base = self.evidence(&l, c);
        let covered: Vec<Vec<u8>> = (0..grid * grid)
            .map(|cell| {
                let (gy, gx) = (cell / grid, cell % grid);
                let mut img = crop.to_vec();
                for y in gy * size / grid..(gy + 1) * size / grid {
                    for x in gx * size / grid..(gx + 1) * size / grid {
                        img[(y * size + x) * 3..(y * size + x) * 3 + 3].copy_from_slice(&GREY);
                    }
                }
                img
            })
            .collect();
        let refs: Vec<&[u8]> = covered.iter().map(Vec::as_slice).collect();
        let lost: Vec<f32> = self.margins(&refs, c)?.into_iter().map(|m| base - m).collect();
        Ok((c, l, normalise(&lost, grid, grid), None, ood.first().copied().flatten()))
    }
}

/// The class's logit less the mean logit: what the map accounts for.
pub fn margin(logits: &[f32], class: usize) -> f32 {
    logits[class] - logits.iter().sum::<f32>() / logits.len() as f32
}

/// Positive evidence scaled to [0, 1] by its maximum, as rows.
fn normalise(map: &[f32], h: usize, w: usize) -> Vec<Vec<f32>> {
    let top = map.iter().copied().fold(0f32, f32::max);
    // Divided, not multiplied by 1 / top: the hottest cell is then exactly 1.
    let scaled = |v: f32| if top > 0.0 { (v / top).max(0.0) } else { 0.0 };
    (0..h).map(|y| (0..w).map(|x| scaled(map[y * w + x])).collect()).collect()
}

/// A heatmap resampled to `size`×`size` (bilinear, cell centres aligned as image resizing does).
pub fn upsample(heat: &[Vec<f32>], size: usize) -> Vec<f32> {
    let (h, w) = (heat.len(), heat.first().map_or(0, Vec::len));
    let mut out = vec![0f32; size * size];
    if h == 0 || w == 0 {
        return out;
    }
    let coord = |i: usize, n: usize| {
        let f = ((i as f32 + 0.5) * n as f32 / size as f32 - 0.5).clamp(0.0, (n - 1) as f32);
        let lo = f.floor() as usize;
        (lo, (lo + 1).min(n - 1), f - lo as f32)
    };
    for y in 0..size {
        let (y0, y1, fy) = coord(y, h);
        for x in 0..size {
            let (x0, x1, fx) = coord(x, w);
            let top = heat[y0][x0] * (1.0 - fx) + heat[y0][x1] * fx;
            let bottom = heat[y1][x0] * (1.0 - fx) + heat[y1][x1] * fx;
            out[y * size + x] = top * (1.0 - fy) + bottom * fy;
        }
    }
    out
}

/// The value the head's Gemm reads (through `Identity` nodes from `logits`).
fn head_input(model: &ModelProto) -> Option<String> {
    let g = model.graph.as_ref()?;
    let mut v = "logits".to_string();
    loop {
        let n = g.node.iter().find(|n| n.output.contains(&v))?;
        match n.op_type.as_str() {
            "Identity" => v = n.input.first()?.clone(),
            "Gemm" => return n.input.first().cloned(),
            _ => return None,
        }
    }
}

/// The spatial map and head weights, when the model is `logits = Gemm(pool(map))` with a
/// global average pool: then the class activation map is exact.
fn cam_structure(model: &ModelProto, classes: usize) -> Option<(String, Vec<f32>, usize)> {
    let g = model.graph.as_ref()?;
    let producer = |v: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == v));
    let mut v = "logits".to_string();
    let gemm = loop {
        let n = producer(&v)?;
        match n.op_type.as_str() {
            "Identity" => v = n.input.first()?.clone(),
            "Gemm" => break n,
            _ => return None,
        }
    };
    let int_attr = |name: &str| gemm.attribute.iter().find(|a| a.name == name).map(|a| a.i);
    let float_attr = |name: &str| gemm.attribute.iter().find(|a| a.name == name).map(|a| a.f);
    if int_attr("transB") != Some(1)
        || int_attr("transA").unwrap_or(0) != 0
        || float_attr("alpha").unwrap_or(1.0) != 1.0
    {
        return None;
    }
    let (shape, weight) = retrain_onnx::initializer_f32(g, gemm.input.get(1)?)?;
    if shape.len() != 2 || shape[0] != classes {
        return None;
    }
    let mut v = gemm.input.first()?.clone();
    loop {
        let n = producer(&v)?;
        match n.op_type.as_str() {
            "Flatten" | "Reshape" | "Identity" | "Squeeze" | "QuantizeLinear" | "DequantizeLinear" => {
                v = n.input.first()?.clone()
            }
            "GlobalAveragePool" => return Some((n.input.first()?.clone(), weight, shape[1])),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_corners_and_interpolates_between() {
        let heat = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        let up = upsample(&heat, 4);
        assert_eq!(up[0], 0.0);
        assert_eq!(up[3], 1.0);
        assert_eq!(up[12], 1.0);
        assert!((up[5] - 0.375).abs() < 1e-6, "{}", up[5]);
        let n = normalise(&[-1.0, 2.0, 4.0, 0.0], 2, 2);
        assert_eq!(n, vec![vec![0.0, 0.5], vec![1.0, 0.0]]);
        assert_eq!(normalise(&[-1.0, -2.0], 1, 2), vec![vec![0.0, 0.0]]);
        // 41 × (1 / 41) is 0.99999994 in f32: the hottest cell is 1 all the same.
        assert_eq!(normalise(&[41.0, 20.5], 1, 2), vec![vec![1.0, 0.5]]);
        assert!((margin(&[1.0, 2.0, 6.0], 2) - 3.0).abs() < 1e-6);
    }
}
