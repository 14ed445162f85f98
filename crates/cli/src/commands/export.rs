//! `retrain export`: a model for a serving engine, or as a page.

use super::Global;
use crate::args::ExportTarget;
use anyhow::Result;
use std::path::{Path, PathBuf};

pub fn run(target: ExportTarget, g: Global) -> Result<()> {
    let (model, dir, batching, storage_uri) = match target {
        ExportTarget::Triton { model, dir, batching, storage_uri } => (model, dir, batching, storage_uri),
        ExportTarget::Web { model, dir, title, ort_web } => return web(&model, &dir, title, ort_web, g),
    };
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

fn web(model: &Path, dir: &Path, title: Option<String>, ort_web: Option<PathBuf>, g: Global) -> Result<()> {
    let e = retrain_web::export(model, dir, &retrain_web::WebOptions { title, ort_web, quiet: g.quiet })?;
    if !g.quiet {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        let size = |name: &str| e.files.iter().find(|f| f.0 == name).map_or(0, |f| f.1);
        println!(
            "wrote {} ({} files, {:.1} MB: model {:.1} MB, ONNX Runtime Web {:.1} MB)",
            dir.display(),
            e.files.len(),
            mb(e.bytes()),
            mb(size("model.onnx")),
            mb(e.files.iter().filter(|f| f.0.starts_with("ort/")).map(|f| f.1).sum())
        );
        println!("look: retrain serve --static {}   (then open the address it prints)", dir.display());
    }
    Ok(())
}
