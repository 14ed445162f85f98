//! `retrain`: the command line over the retrain library. Parsing, printing and exit codes
//! live here; everything else is in the library crates.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use retrain::train::TrainOptions;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "retrain",
    version,
    about = "Transfer learning for image classifiers: a folder of labelled photos in, a trained ONNX classifier out."
)]
struct Cli {
    /// No progress bars or warnings; errors are still printed.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Worker threads (decoding and ONNX Runtime); default: all cores.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ClassWeights {
    Auto,
    None,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Text,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier on DATA_DIR (one sub-folder per class, or train/ and val/ folders of them).
    Train {
        data_dir: PathBuf,
        /// Backbone (see `retrain models`).
        #[arg(long, default_value = "mobilenet_v2")]
        model: String,
        /// Weights file (.pth or .safetensors, torchvision names) instead of the cached download.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Validation folder (class sub-folders); default: DATA_DIR/val if DATA_DIR/train exists.
        #[arg(long)]
        val: Option<PathBuf>,
        /// Fraction of each class held out for validation when there is no val folder.
        #[arg(long, default_value_t = 0.2)]
        val_fraction: f64,
        /// Seed of the validation split.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the model.
        #[arg(long, default_value = "model.onnx")]
        out: PathBuf,
        /// Write a JSON report (accuracy, per-class metrics, confusion matrix, timings, skipped files).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Weight classes inversely to their frequency.
        #[arg(long, value_enum, default_value_t = ClassWeights::Auto)]
        class_weights: ClassWeights,
        /// L2 penalty on the head's weights.
        #[arg(long, default_value_t = 0.1)]
        l2: f32,
        /// Learning rate of the head's optimiser (Adam).
        #[arg(long, default_value_t = 0.01)]
        lr: f64,
        /// Images per ONNX Runtime batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Recompute features instead of using the on-disk cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Predict the class of images (files or folders).
    Predict {
        model: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 1)]
        top: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Evaluate a trained model on a labelled folder.
    Eval {
        model: PathBuf,
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the backbones retrain knows.
    Models {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One readable line, never a panic trace. The library's errors already carry their
        // cause in their message, so the chain is not printed again.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let threads = cli.threads.unwrap_or_else(retrain::default_threads);
    match cli.command {
        Command::Train {
            data_dir,
            model,
            weights,
            val,
            val_fraction,
            seed,
            out,
            report,
            class_weights,
            l2,
            lr,
            batch,
            no_cache,
        } => {
            let mut opts = TrainOptions::new(&data_dir, &model, &out);
            opts.val_dir = val;
            opts.val_fraction = val_fraction;
            opts.seed = seed;
            opts.weights = weights;
            opts.threads = threads;
            opts.batch = batch.max(1);
            opts.quiet = cli.quiet;
            opts.head.balanced = class_weights == ClassWeights::Auto;
            opts.head.l2 = l2;
            opts.head.learning_rate = lr;
            if no_cache {
                opts.feature_cache = None;
            }
            let r = retrain::train::train(&opts)?;
            if let Some(path) = &report {
                let json = serde_json::to_string_pretty(&r)?;
                std::fs::write(path, json)
                    .map_err(|e| anyhow::anyhow!("{}: cannot write report: {e}", path.display()))?;
            }
            if !cli.quiet {
                println!(
                    "{}: {} classes, {} train / {} val images ({} skipped), features {} computed / {} cached",
                    r.backbone,
                    r.class_names.len(),
                    r.train_images,
                    r.val_images,
                    r.skipped.len(),
                    r.features_computed,
                    r.features_cached
                );
                println!(
                    "val accuracy {:.4} (train {:.4}), best step {} of {}",
                    r.val_accuracy, r.train_accuracy, r.best_step, r.steps_run
                );
                println!("wrote {} in {:.2}s", r.model.display(), r.timings.total);
            }
        }
        Command::Predict {
            model,
            paths,
            top,
            format,
        } => {
            let mut c = retrain::model::Classifier::open(&model, threads)?;
            let bar = retrain::progress_bar(0, "predict", cli.quiet);
            let (preds, fails) = retrain::predict::predict(&mut c, &paths, top, &bar)?;
            bar.finish_and_clear();
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"predictions": preds, "failed": fails})
                    )?
                ),
                Format::Csv => print!("{}", retrain::predict::to_csv(&preds)),
                Format::Text => {
                    for p in &preds {
                        let cls: Vec<String> = p
                            .top
                            .iter()
                            .map(|r| format!("{} {:.4}", r.class, r.probability))
                            .collect();
                        println!("{}\t{}", p.path.display(), cls.join("\t"));
                    }
                }
            }
            for f in fails.iter().filter(|f| !f.explicit && !cli.quiet) {
                eprintln!("warning: skipped {}: {}", f.path.display(), f.reason);
            }
            let explicit: Vec<String> = fails
                .iter()
                .filter(|f| f.explicit)
                .map(|f| format!("{}: {}", f.path.display(), f.reason))
                .collect();
            if !explicit.is_empty() {
                bail!("{}", explicit.join("; "));
            }
            if preds.is_empty() {
                bail!(
                    "no images found in {}",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Command::Eval {
            model,
            data_dir,
            format,
        } => {
            let mut c = retrain::model::Classifier::open(&model, threads)?;
            let bar = retrain::progress_bar(0, "eval", cli.quiet);
            let ev = retrain::eval::evaluate(&mut c, &data_dir, &bar)?;
            bar.finish_and_clear();
            for s in &ev.skipped {
                if !cli.quiet {
                    eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
                }
            }
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&ev)?),
                _ => print!(
                    "{} images in {}\n{}",
                    ev.images,
                    ev.data.display(),
                    ev.metrics.to_text()
                ),
            }
        }
        Command::Models { format } => {
            let reg = retrain::registry();
            if format == Format::Json {
                let rows: Vec<_> = reg
                    .iter()
                    .map(|b| serde_json::json!({"backbone": b, "weights": b.weights.file_name, "sha256": b.weights.sha256, "sources": b.weight_sources(), "cached": b.weights.is_cached()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20} {:>6} {:>8} {:>7} {:>8}  {:<28} {:<7} source",
                    "name", "input", "params", "top-1", "features", "preprocessing", "cached"
                );
                for b in reg {
                    let p = b.preprocess;
                    let pre = if p.mean == [127.0; 3] {
                        format!("{}→{}, (x-127)/128", p.resize, p.crop)
                    } else {
                        format!("{}→{}, ImageNet mean/std", p.resize, p.crop)
                    };
                    println!(
                        "{:<20} {:>6} {:>7.1}M {:>6.1}% {:>8}  {:<28} {:<7} {}",
                        b.name,
                        p.crop,
                        b.params_millions,
                        b.imagenet_top1,
                        b.feature_dim,
                        pre,
                        if b.weights.is_cached() { "yes" } else { "no" },
                        b.weight_sources().first().cloned().unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}
