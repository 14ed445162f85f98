//! The frozen trunk: training batches decoded, augmented and run through it in ONNX Runtime
//! (in a thread of their own, one batch ahead of the tail), and the validation photos' cut
//! activations, computed once.

use crate::dataset::Sample;
use crate::metrics::argmax;
use crate::Result;
use rayon::prelude::*;
use retrain_features::{Session, Sessions};
use retrain_pixels::{Augment, Geometry, Limits, Rng};
use retrain_tune::Trainer;
use std::path::PathBuf;

/// Cut activations of a set of images, one row per image, with their labels.
pub(super) struct Activations {
    pub rows: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
    /// Every label of each photo (its class first).
    pub sets: Vec<Vec<usize>>,
}

/// A training batch at the cut: the frozen trunk's activations for the decoded images.
pub(super) struct CutBatch {
    pub acts: Vec<f32>,
    pub labels: Vec<usize>,
    pub sets: Vec<Vec<usize>>,
    pub failed: Vec<(PathBuf, String)>,
}

/// One training batch, decoded and augmented.
struct Batch {
    pixels: Vec<u8>,
    labels: Vec<usize>,
    sets: Vec<Vec<usize>>,
    failed: Vec<(PathBuf, String)>,
}

/// What the trunk thread needs to make an epoch's batches.
pub(super) struct Feed<'a> {
    pub samples: &'a [&'a Sample],
    pub geometry: Geometry,
    pub limits: Limits,
    pub augment: Augment,
    pub seed: u64,
}

impl Feed<'_> {
    /// Decodes, augments and runs through the trunk the samples at `order`, of `epoch`.
    pub fn batch(&self, session: &mut Session, epoch: usize, order: &[usize]) -> Result<CutBatch> {
        let samples: Vec<&Sample> = order.iter().map(|&i| self.samples[i]).collect();
        let b = make_batch(&samples, (self.geometry, self.limits), self.augment, self.seed, epoch, order);
        run_trunk(session, b, self.geometry.crop as usize)
    }
}

fn run_trunk(session: &mut Session, b: Batch, size: usize) -> Result<CutBatch> {
    let acts = match b.labels.len() {
        0 => Vec::new(),
        n => {
            let outs = session.run(b.pixels, n, size)?;
            outs.into_iter().next().map(|(_, _, acts)| acts).unwrap_or_default()
        }
    };
    Ok(CutBatch { acts, labels: b.labels, sets: b.sets, failed: b.failed })
}

fn make_batch(
    samples: &[&Sample],
    (g, limits): (Geometry, Limits),
    aug: Augment,
    seed: u64,
    epoch: usize,
    order: &[usize],
) -> Batch {
    let items: Vec<_> = samples
        .par_iter()
        .zip(order)
        .map(|(s, &i)| {
            let bytes = retrain_pixels::read_file(&s.path, limits).map_err(|e| e.reason())?;
            let img = retrain_pixels::decode_for(&bytes, &s.path, g, limits).map_err(|e| e.reason())?;
            let mut rng = Rng::for_item(seed, epoch as u64, i as u64);
            Ok::<_, String>(retrain_pixels::augmented(&img, g, aug, &mut rng))
        })
        .collect();
    let mut b = Batch { pixels: Vec::new(), labels: Vec::new(), sets: Vec::new(), failed: Vec::new() };
    for (s, r) in samples.iter().zip(items) {
        match r {
            Ok(px) => {
                b.pixels.extend(px);
                b.labels.push(s.label);
                b.sets.push(s.labels().collect());
            }
            Err(e) => b.failed.push((s.path.clone(), e)),
        }
    }
    b
}

/// The validation photos' activations at the cut (the trunk is frozen and validation uses the
/// plain preprocessing, so once for the run); photos that do not decode are left out.
pub(super) fn val_activations(
    sessions: &mut Sessions,
    cut: &str,
    val: &[Sample],
    (g, limits): (Geometry, Limits),
    batch: usize,
    quiet: bool,
) -> Result<Activations> {
    let bar = crate::progress_bar(val.len() as u64, "val trunk", quiet);
    let files: Vec<PathBuf> = val.iter().map(|s| s.path.clone()).collect();
    let extracted = retrain_features::extract(sessions, &[cut], &files, g, limits, None, batch, &bar)?;
    bar.finish_and_clear();
    let mut acts = Activations { rows: Vec::new(), labels: Vec::new(), sets: Vec::new() };
    for (s, r) in val.iter().zip(extracted.features) {
        if let Ok(row) = r {
            acts.rows.push(row);
            acts.labels.push(s.label);
            acts.sets.push(s.labels().collect());
        }
    }
    Ok(acts)
}

/// `[photos, classes]` of 0/1 from each photo's labels.
pub(super) fn on_matrix(sets: &[Vec<usize>], classes: usize) -> Vec<f32> {
    let mut on = vec![0f32; sets.len() * classes];
    for (i, set) in sets.iter().enumerate() {
        set.iter().filter(|&&c| c < classes).for_each(|&c| on[i * classes + c] = 1.0);
    }
    on
}

/// Mean validation loss and accuracy; `None`s without a validation split. With
/// `positive_weight` (photos with several labels), the weighted binary cross-entropy and the
/// share of photos with every label right at 0.5.
pub(super) fn evaluate(
    trainer: &Trainer,
    acts: &Activations,
    shape: &[usize],
    positive_weight: Option<&[f32]>,
) -> Result<(Option<f32>, Option<f64>)> {
    if acts.rows.is_empty() {
        return Ok((None, None));
    }
    let (mut loss, mut correct) = (0f64, 0usize);
    for ((rows, labels), sets) in acts.rows.chunks(64).zip(acts.labels.chunks(64)).zip(acts.sets.chunks(64)) {
        let x: Vec<f32> = rows.concat();
        let dims: Vec<usize> = std::iter::once(rows.len()).chain(shape.iter().copied()).collect();
        let logits = trainer.logits(x, &dims)?;
        let k = logits.len() / rows.len();
        match positive_weight {
            None => {
                for (l, &y) in logits.chunks_exact(k).zip(labels) {
                    let p = retrain_head::softmax(l);
                    loss -= (p[y].max(1e-12) as f64).ln();
                    correct += (argmax(l) == y) as usize;
                }
            }
            Some(w) => {
                let on = on_matrix(sets, k);
                for (z, y) in logits.chunks_exact(k).zip(on.chunks_exact(k)) {
                    for c in 0..k {
                        let p = retrain_head::sigmoid(z[c]) as f64;
                        loss -= match y[c] > 0.5 {
                            true => w[c] as f64 * p.max(1e-12).ln(),
                            false => (1.0 - p).max(1e-12).ln(),
                        };
                    }
                    correct += z.iter().zip(y).all(|(&z, &y)| (z >= 0.0) == (y > 0.5)) as usize;
                }
            }
        }
    }
    let n = acts.labels.len() as f64;
    Ok((Some((loss / n) as f32), Some(correct as f64 / n)))
}
