//! `retrain export`: a model for a serving engine.

use super::Global;
use crate::args::ExportTarget;
use anyhow::Result;

pub fn run(target: ExportTarget, g: Global) -> Result<()> {
    let ExportTarget::Triton { model, dir, batching, storage_uri } = target;
    let opts = retrain_serve::TritonOptions {
        max_batch: batching.max_batch,
        queue_delay_us: batching.batch_wait_ms as u64 * 1000,
        storage_uri,
    };
    let e = retrain_serve::export_triton(&model, &dir, &opts)?;
    if !g.quiet {
        println!(
            "wrote {}, {} and {}\nrun: tritonserver --model-repository {}\nKServe: copy {} to {}, then kubectl apply -f {}",
            e.model.display(),
            e.config.display(),
            e.labels.display(),
            dir.display(),
            dir.display(),
            opts.storage_uri,
            e.inference_service.display()
        );
    }
    Ok(())
}
