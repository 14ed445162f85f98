//! `retrain audit`: the audit of a labelled folder and its page; `audit apply` and `audit undo`.

use super::{create_parent, Global};
use crate::args::{AuditAction, AuditArgs, Format};
use anyhow::{Context, Result};
use retrain::RunSettings;
use retrain_audit::decisions;

pub fn run(a: AuditArgs, g: Global) -> Result<()> {
    match a.action {
        Some(AuditAction::Apply { decisions: file, data, format }) => {
            let done = decisions::apply(&file, data.as_deref())?;
            print_done(&done, format, "applied")
        }
        Some(AuditAction::Undo { data_dir, format }) => {
            let done = decisions::undo(&data_dir)?;
            print_done(&done, format, "undone")
        }
        None => {
            let dir = a.data_dir.clone().context("give DATA_DIR")?;
            let split = &a.split;
            let data = retrain::DataSpec {
                val_dir: split.val.clone(),
                val_fraction: split.val_fraction,
                seed: split.seed,
                max_pixels: a.pixels.limits().max_pixels,
                max_file_size: a.pixels.limits().max_file_size,
                labels: a.labels.source(),
                ..retrain::DataSpec::new(&dir)
            };
            let spec = a.backbone.spec()?;
            if spec.name == retrain::select::AUTO {
                anyhow::bail!("--model auto: the audit needs one backbone's features; name one (default mobilenet_v2)");
            }
            let run =
                RunSettings { threads: g.threads, quiet: g.quiet, cache: a.cache.root(), ..RunSettings::default() };
            let opts = retrain_audit::Options {
                folds: a.folds,
                duplicate_threshold: a.duplicate_threshold,
                stray_fence: a.stray_fence,
                tiny: a.tiny,
                unlabelled: a.unlabelled.clone(),
                count: a.count,
                seed: a.split.seed,
                batch: a.batch.batch,
                ..Default::default()
            };
            // Refuse an unwritable page before the work, not after.
            create_parent(&a.out)?;
            retrain::outputs::check_writable(&a.out)?;
            let audited = retrain_audit::audit(&data, &spec, &run, &opts)?;
            let page = retrain_audit::page(&audited);
            retrain::outputs::write_file(&a.out, page.as_bytes())?;
            if let Some(path) = &a.out_of_fold {
                create_parent(path)?;
                retrain::outputs::write_file(path, audited.out_of_fold_csv().as_bytes())?;
            }
            if let Some(path) = &a.suggested {
                create_parent(path)?;
                let d = decisions::suggested(&audited)?;
                retrain::outputs::write_file(path, serde_json::to_string_pretty(&d)?.as_bytes())?;
            }
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&audited.audit)?),
                _ if g.quiet => {}
                _ => println!("{}\npage: {}", retrain_audit::to_text(&audited.audit), a.out.display()),
            }
            Ok(())
        }
    }
}

fn print_done(done: &decisions::Done, format: Format, what: &str) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(done)?),
        _ => println!(
            "{what}: {} moved to another class, {} set aside ({} kept); undo log {}",
            done.moved,
            done.set_aside,
            done.kept,
            done.log.display()
        ),
    }
    Ok(())
}
