//! `retrain predict`.

use super::{failures, Global};
use crate::args::{Format, PredictArgs};
use anyhow::{bail, Result};
use retrain::model::Classifier;
use retrain_files::names::shown;

pub fn run(a: PredictArgs, g: Global) -> Result<()> {
    let (mut c, paths) = match a.model {
        Some(name) => {
            let b = retrain::backbone::LoadedBackbone::load(&name, a.weights.as_deref(), g.quiet)?;
            (Classifier::imagenet(&b, g.threads)?, a.inputs)
        }
        None => {
            if a.inputs.len() < 2 {
                bail!("give MODEL.onnx and at least one image (or --model NAME for an ImageNet backbone)");
            }
            (Classifier::open(&a.inputs[0], g.threads)?, a.inputs[1..].to_vec())
        }
    };
    c.limits = a.pixels.limits();
    let bar = retrain::progress_bar(0, "predict", g.quiet);
    let threshold = c.threshold(a.reject.reject)?;
    let (preds, fails) = retrain::predict::predict(&mut c, &paths, a.top, threshold, &bar)?;
    bar.finish_and_clear();
    match a.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"predictions": preds, "failed": fails}))?)
        }
        Format::Csv => print!("{}", retrain::predict::to_csv(&preds)),
        Format::Text => {
            for p in &preds {
                println!("{}\t{}", shown(&p.path), retrain::predict::to_text(p));
            }
        }
    }
    failures(&fails, preds.len(), &paths, g.quiet)
}
