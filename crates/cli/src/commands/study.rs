//! `retrain study`: learning curves per strategy and backbone on the user's photos.

use super::{keep_freed_memory, Global};
use crate::args::{StudyArgs, Weights};
use anyhow::{bail, Result};
use retrain::{RunSettings, TrainSpec};

pub fn run(a: StudyArgs, g: Global) -> Result<()> {
    let mut base = TrainSpec::new(&a.data_dir, &a.models[0], &a.out);
    base.data = a.input.data(&a.data_dir, &a.split);
    let w = Weights::parse(&a.weights);
    if let Some(bare) = w.bare.first() {
        bail!("--weights {}: give NAME=FILE, NAME one of the backbones (see `retrain models`)", bare.display());
    }
    base.backbone.weights_for = w.named;
    let run = RunSettings { threads: g.threads, quiet: g.quiet, cache: a.cache.root(), ..RunSettings::default() };
    keep_freed_memory();
    let opts = retrain_study::StudyOptions {
        base,
        run,
        models: a.models,
        strategies: a.strategies.into_iter().map(Into::into).collect(),
        shots: a.shots,
        repeats: a.repeats,
        epochs: a.epochs,
        layers: a.layers,
        out: a.out.clone(),
    };
    let study = retrain_study::run(&opts)?;
    if let Some(page) = &a.html {
        retrain::outputs::write_file(page, retrain_study::html(&study).as_bytes())?;
    }
    if !g.quiet {
        println!(
            "{:<20} {:<9} {:>6} {:>7} {:>15} {:>9}",
            "backbone", "strategy", "shots", "images", "val accuracy", "seconds"
        );
        for c in &study.summary {
            println!(
                "{:<20} {:<9} {:>6} {:>7.0} {:>7.3} ± {:.3} {:>9.1}",
                c.model,
                c.strategy.name(),
                c.shots.to_string(),
                c.train_images,
                c.val_accuracy,
                c.val_accuracy_sd,
                c.seconds
            );
        }
        println!("{}", study.reading);
        println!("wrote {}{}", a.out.display(), a.html.map(|h| format!(" and {}", h.display())).unwrap_or_default());
    }
    Ok(())
}
