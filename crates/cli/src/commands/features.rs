//! `retrain features`: one shard of the features `train` will look up.

use super::{create_parent, Global};
use crate::args::{FeaturesArgs, Format};
use anyhow::Result;
use retrain::RunSettings;

pub fn run(a: FeaturesArgs, g: Global) -> Result<()> {
    let data = a.input.data(&a.data_dir, &a.split);
    let mut backbone = a.backbone.spec()?;
    backbone.precision = a.precision.precision.into();
    let run = RunSettings { threads: g.threads, quiet: g.quiet, cache: a.cache.root(), ..RunSettings::default() };
    let shard = a.shard.unwrap_or(retrain_shard::Shard::ALL);
    // A manifest per shard usually goes to a folder of them on the shared volume.
    if let Some(path) = &a.manifest {
        create_parent(path)?;
    }
    let bar = retrain::progress_bar(0, &format!("shard {shard}"), g.quiet);
    let m = retrain_shard::extract(&data, &backbone, a.batch.batch, &run, shard, &bar)?;
    bar.finish_and_clear();
    for s in m.skipped.iter().filter(|_| !g.quiet) {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    let json = serde_json::to_string_pretty(&m)?;
    if let Some(path) = &a.manifest {
        retrain::outputs::write_file(path, json.as_bytes())?;
    }
    match a.format {
        Format::Json => println!("{json}"),
        _ if g.quiet => {}
        _ => println!(
            "shard {}: {} of {} files, features {} computed / {} cached ({} skipped) in {:.1}s, {:.0} images/s; cache {}",
            m.shard,
            m.files,
            m.dataset_files,
            m.computed,
            m.cached,
            m.skipped.len(),
            m.seconds,
            m.images_per_second,
            m.cache.display()
        ),
    }
    Ok(())
}
