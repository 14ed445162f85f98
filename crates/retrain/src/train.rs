//! `retrain train`: the backbone chosen first when asked (`--model auto`), then the strategy's
//! stage: [`crate::linear`] or [`crate::finetune`].

use crate::select::{self, AUTO};
use crate::spec::{RunSettings, Strategy, TrainSpec};
use crate::train_report::TrainReport;
use crate::Result;
use std::time::Instant;

/// Trains a classifier as `spec` says and writes it to `spec.out`.
pub fn train(spec: &TrainSpec, run: &RunSettings) -> Result<TrainReport> {
    spec.backbone.precision.check()?;
    if spec.backbone.name == AUTO {
        let t = Instant::now();
        let selection = select::choose(spec, run)?;
        let chosen = spec.for_model(&selection.chosen);
        let selecting = t.elapsed().as_secs_f64();
        let mut report = train(&chosen, run)?;
        report.timings.total += selecting;
        report.model_selection = Some(selection);
        return Ok(report);
    }
    match spec.recipe.strategy {
        Strategy::Linear => crate::linear::train(spec, run),
        _ => crate::finetune::finetune(spec, run),
    }
}
