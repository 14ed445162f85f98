//! The run directory: `run.json` (what the run is, so `--resume DIR` alone continues it) and
//! the trainer's checkpoints.

use crate::outputs::write_file;
use crate::spec::{RunFile, RunSettings, TrainSpec};
use crate::{Error, Result};
use retrain_tune::{Progress, Trainer};
use std::path::Path;

/// Resumes the run checkpointed in `run_dir` (when asked and there is one), or starts a new
/// one there. Returns where the run stands and the best weights so far.
pub(super) fn start_or_resume(
    trainer: &mut Trainer,
    spec: &TrainSpec,
    run: &RunSettings,
    run_dir: &Path,
    train_images: usize,
) -> Result<(Progress, Vec<Vec<f32>>)> {
    let mut progress = Progress::default();
    trainer.start_average(train_images.div_ceil(spec.recipe.tune.batch.max(1)));
    let mut best = trainer.values();
    if run.resume && run_dir.join("state.json").exists() {
        progress = trainer.restore(run_dir)?;
        if let Some(b) = trainer.read_best(run_dir)? {
            best = b;
        }
    } else {
        std::fs::create_dir_all(run_dir).map_err(|source| Error::Write { path: run_dir.to_path_buf(), source })?;
        Trainer::clear_checkpoint(run_dir);
        write_file(&run_dir.join(RunFile::NAME), &RunFile::new(spec, run).to_json())?;
    }
    Ok((progress, best))
}
