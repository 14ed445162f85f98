//! What to label next: unlabelled photos ranked by how much they would teach the model. Each
//! photo's uncertainty (one minus the margin between the linear head's top two classes, trained
//! on every labelled photo) times its distance from what is already labelled (1 − cosine to
//! the nearest of the open-set bank or of the photos already picked), picked greedily so that
//! ten near-identical confusing photos do not fill the list.

use crate::Result;
use retrain::dataset::Skipped;
use retrain::prepare::Prepared;
use retrain::{Recipe, RunSettings};
use retrain_head::{HeadConfig, Split};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// An unlabelled photo worth labelling.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Suggestion {
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    /// The head's top class for it now.
    pub predicted: String,
    /// uncertainty × distance when it was picked.
    pub score: f32,
    pub uncertainty: f32,
    pub distance: f32,
}

/// Picks `count` rows greedily by `uncertainty[i] × distance[i]`, each pick lowering the
/// distance of the others to at most `1 − cosine` to it (`unit`: unit rows of `dim`).
pub fn pick(unit: &[f32], dim: usize, uncertainty: &[f32], distance: &[f32], count: usize) -> Vec<(usize, f32, f32)> {
    let mut d = distance.to_vec();
    let mut taken = vec![false; uncertainty.len()];
    let mut out = Vec::new();
    for _ in 0..count.min(uncertainty.len()) {
        let Some(best) = (0..uncertainty.len())
            .filter(|&i| !taken[i])
            .max_by(|&a, &b| (uncertainty[a] * d[a]).total_cmp(&(uncertainty[b] * d[b])).then(b.cmp(&a)))
        else {
            break;
        };
        taken[best] = true;
        out.push((best, uncertainty[best], d[best]));
        let q = &unit[best * dim..(best + 1) * dim];
        for (i, di) in d.iter_mut().enumerate() {
            let cos: f32 = q.iter().zip(&unit[i * dim..(i + 1) * dim]).map(|(a, b)| a * b).sum();
            *di = di.min(1.0 - cos);
        }
    }
    out
}

/// Ranks the photos below `dir` for `prepared`'s classes: its backbone's features of them
/// (cached like the labelled ones), a head on every labelled photo (`x`, `y`) trained `steps`
/// steps, the bank of `fitted`.
#[allow(clippy::too_many_arguments)]
pub fn suggest(
    prepared: &Prepared,
    x: &[f32],
    y: &[usize],
    dir: &Path,
    fitted: &retrain_openset::Fitted,
    recipe: &Recipe,
    steps: usize,
    count: usize,
    limits: retrain::Limits,
    run: &RunSettings,
) -> Result<(Vec<Suggestion>, Vec<Skipped>)> {
    let walk = retrain::dataset::files_below(dir);
    let mut skipped = walk.skipped;
    let names = &prepared.ds.class_names;
    let dim = prepared.backbone.feature_dim();
    let cache = run.cache.as_deref().map(|root| prepared.backbone.feature_cache(root));
    let mut sessions = prepared.backbone.feature_sessions(run.threads);
    let bar = retrain::progress_bar(walk.files.len() as u64, "unlabelled", run.quiet);
    let extracted = retrain_features::extract(
        &mut sessions,
        &["features"],
        &walk.files,
        prepared.backbone.geometry(),
        limits,
        cache.as_ref(),
        recipe.batch,
        &bar,
    )?;
    bar.finish_and_clear();
    let (mut files, mut ux) = (Vec::new(), Vec::new());
    for (f, r) in walk.files.iter().zip(extracted.features) {
        match r {
            Ok(v) => {
                files.push(f.clone());
                ux.extend(v);
            }
            Err(e) => skipped.push(Skipped { path: f.clone(), reason: e.reason() }),
        }
    }
    let cfg = HeadConfig { max_steps: steps.max(1), ..recipe.head.clone() };
    let head = retrain_head::train(Split { features: x, labels: y }, None, dim, names.len(), &cfg)?;
    let uncertainty: Vec<f32> = ux
        .chunks_exact(dim)
        .map(|f| {
            let mut p = retrain_head::softmax(&head.logits(f));
            p.sort_by(|a, b| b.total_cmp(a));
            1.0 - (p[0] - p.get(1).copied().unwrap_or(0.0))
        })
        .collect();
    let unit = retrain_openset::unit_rows(&ux, dim);
    let distance = retrain_openset::nearest(&fitted.bank, dim, &unit);
    let picked = pick(&unit, dim, &uncertainty, &distance, count);
    let suggestions = picked
        .into_iter()
        .map(|(i, u, d)| {
            let p = retrain_head::softmax(&head.logits(&ux[i * dim..(i + 1) * dim]));
            let top = crate::labels::argmax(&p);
            Suggestion {
                path: files[i].clone(),
                predicted: names[top].clone(),
                score: u * d,
                uncertainty: u,
                distance: d,
            }
        })
        .collect();
    Ok((suggestions, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_uncertain_and_not_alike() {
        // Rows 0 and 1 are the same direction and the most uncertain; 2 is elsewhere.
        let unit = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let uncertainty = [0.9, 0.9, 0.6, 0.1];
        let distance = [0.5, 0.5, 0.5, 0.5];
        let p = pick(&unit, 2, &uncertainty, &distance, 2);
        assert_eq!(p.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 2]);
        // Its twin now has no distance left, so it comes after the far, less uncertain one.
        assert_eq!(
            pick(&unit, 2, &uncertainty, &distance, 4).iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![0, 2, 3, 1]
        );
    }
}
