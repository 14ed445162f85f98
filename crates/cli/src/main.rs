//! `retrain`: the command line over the retrain library. Parsing, printing and exit codes
//! live here; everything else is in the library crates.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use retrain::train::{Strategy, TrainOptions};
use retrain::BatchNormMode as retrain_tune_bn;
use retrain::Filter as retrain_pixels_filter;
use retrain::TuneConfig;
use retrain::TuneOptimizer as retrain_tune_kind;
use retrain_files::names::{self, shown, shown_str};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    #[arg(long, global = true, value_parser = count(1, 4096))]
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
enum StrategyArg {
    Linear,
    Finetune,
    Full,
    Scratch,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum BatchNormArg {
    Train,
    Frozen,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum OptimizerArg {
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum AugmentArg {
    None,
    Light,
    Standard,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum PrecisionArg {
    Fp32,
    Bf16,
    Int8,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Text,
    Json,
    Csv,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum TextOrJson {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier on DATA_DIR (one sub-folder per class, or train/ and val/ folders of them).
    Train {
        /// Folder of class folders (not needed with --resume).
        #[arg(required_unless_present = "resume")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        backbone: BackboneArgs,
        #[command(flatten)]
        split: SplitArgs,
        /// Where to write the model.
        #[arg(long, default_value = "model.onnx")]
        out: PathBuf,
        /// Write a JSON report (accuracy, per-class metrics, confusion matrix, timings, skipped files).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also write the HTML report on the validation photos (see `retrain report`).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Weight classes inversely to their frequency.
        #[arg(long, value_enum, default_value_t = ClassWeights::Auto)]
        class_weights: ClassWeights,
        /// L2 penalty on the head's weights.
        #[arg(long, default_value_t = 0.1, value_parser = number::<f32>(NON_NEGATIVE))]
        l2: f32,
        /// Learning rate: of the linear head's full-batch Adam (default 0.01); with finetune/full,
        /// the new head's peak rate (default 0.001).
        #[arg(long, value_parser = number::<f64>(POSITIVE))]
        lr: Option<f64>,
        /// Images per batch (ONNX Runtime batches, and fine-tuning's optimiser steps).
        #[arg(long, default_value_t = 32, value_parser = count(1, 65536))]
        batch: usize,
        #[command(flatten)]
        cache: CacheArgs,
        /// linear: a head on frozen features. finetune: then the last --unfreeze blocks with the
        /// head. full: then every layer. scratch: every layer from random initialisation (the
        /// baseline transfer is measured against; BatchNorm in training mode, 30 epochs).
        #[arg(long, value_enum, default_value_t = StrategyArg::Linear)]
        strategy: StrategyArg,
        /// Blocks to fine-tune, counted from the top (default: 12 for MobileNetV2, 8 for
        /// EfficientNet-Lite, about a fifth of the blocks for other backbones).
        #[arg(long, value_parser = count(1, 100_000))]
        unfreeze: Option<usize>,
        /// Fine-tuning epochs after the linear head (default 7; from scratch 30).
        #[arg(long, value_parser = count(1, 100_000))]
        epochs: Option<usize>,
        /// Peak learning rate of the unfrozen blocks (default: --lr / 5; from scratch --lr).
        #[arg(long, value_parser = number::<f64>(POSITIVE))]
        backbone_lr: Option<f64>,
        /// Fine-tuning optimiser (sgd: with momentum 0.9).
        #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
        optimizer: OptimizerArg,
        /// Decoupled weight decay (AdamW) or L2 (SGD) while fine-tuning.
        #[arg(long, default_value_t = TuneConfig::default().weight_decay, value_parser = number::<f32>(NON_NEGATIVE))]
        weight_decay: f32,
        /// Linear learning-rate warm-up, in epochs, before the cosine decay.
        #[arg(long, default_value_t = TuneConfig::default().warmup_epochs, value_parser = number::<f64>(NON_NEGATIVE))]
        warmup_epochs: f64,
        /// Label smoothing of the fine-tuning loss (0 = none).
        #[arg(long, default_value_t = TuneConfig::default().label_smoothing, value_parser = number::<f32>(BELOW_ONE))]
        label_smoothing: f32,
        /// Evaluate and export a moving average of the fine-tuned weights, spanning about this
        /// many epochs (0 = the last weights themselves; default 2, from scratch 0).
        #[arg(long, value_parser = number::<f64>(NON_NEGATIVE))]
        ema: Option<f64>,
        /// Dropout on the new head's input while fine-tuning.
        #[arg(long, default_value_t = TuneConfig::default().dropout, value_parser = number::<f32>(BELOW_ONE))]
        dropout: f32,
        /// BatchNorm in the trained blocks: train (batch statistics, running ones updated, as
        /// PyTorch's model.train()) or frozen (ImageNet's running statistics). Frozen blocks
        /// always use running statistics.
        #[arg(long, value_enum, default_value_t = BatchNormArg::Frozen)]
        batchnorm: BatchNormArg,
        /// Stop fine-tuning after this many epochs without a lower validation loss (default 5;
        /// from scratch: never, every epoch runs).
        #[arg(long, value_parser = count(1, 100_000))]
        patience: Option<usize>,
        /// End the backbone after this stage (1-based, early to late; see `retrain study --layers`):
        /// a linear head on its globally pooled map.
        #[arg(long, value_parser = count(1, 1000), value_name = "STAGE")]
        cut: Option<usize>,
        /// Backbones --model auto cross-validates (default: mobilenet_v2, efficientnet_lite0/1/2,
        /// resnet50, efficientnet_b0, convnext_tiny, those whose weights are given or cached).
        #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
        candidates: Option<Vec<String>>,
        /// Training-time augmentation for fine-tuning (evaluation always uses the plain preprocessing).
        #[arg(long, value_enum, default_value_t = AugmentArg::Standard)]
        augment: AugmentArg,
        /// Arithmetic of the backbone in the model: int8 is quantised after calibration on 64 of
        /// the training images (faster, usually within a point of fp32; see README); bf16 is
        /// refused with the reason. With finetune/full, training runs in fp32 and the exported
        /// model is quantised.
        #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
        precision: PrecisionArg,
        /// Where fine-tuning checkpoints go (default: OUT with the extension .run).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Continue the fine-tuning run checkpointed in RUN_DIR (its options come from there).
        #[arg(long, value_name = "RUN_DIR", conflicts_with = "data_dir")]
        resume: Option<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
    },
    /// Compute and cache the features `train` will need, for all of DATA_DIR or one shard of it:
    /// run shards 0/N … N-1/N on N machines sharing --cache, then `train --cache` anywhere.
    Features {
        /// Folder of class folders, as given to `train`.
        data_dir: PathBuf,
        #[command(flatten)]
        backbone: BackboneArgs,
        /// This machine's part: shard K of N (K from 0), chosen by a hash of each file's path
        /// relative to DATA_DIR, so machines agree without talking. Default: everything.
        #[arg(long, value_name = "K/N")]
        shard: Option<retrain_shard::Shard>,
        #[command(flatten)]
        cache: CacheArgs,
        /// As for `train`: int8 features depend on the calibration images, which depend on the split.
        #[command(flatten)]
        split: SplitArgs,
        /// Images per ONNX Runtime batch.
        #[arg(long, default_value_t = 32, value_parser = count(1, 65536))]
        batch: usize,
        /// The backbone's arithmetic, as `train --precision` (int8 calibrates on the same images).
        #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
        precision: PrecisionArg,
        /// Also write the manifest (JSON) to this file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// text: one summary line; json: the manifest on standard output.
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
        #[command(flatten)]
        input: InputArgs,
    },
    /// Predict the class of images (files or folders) with a trained MODEL.onnx, or with a
    /// backbone's own ImageNet classifier (`--model NAME`, no trained head).
    #[command(
        override_usage = "retrain predict MODEL.onnx PATH... [OPTIONS]\n       retrain predict --model NAME PATH... [OPTIONS]"
    )]
    Predict {
        /// MODEL.onnx then the images; with --model, only images.
        #[arg(required = true, value_name = "PATH")]
        inputs: Vec<PathBuf>,
        /// Use this backbone's ImageNet classifier instead of a trained model file.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Weights for --model (default: the cached official file).
        #[arg(long, requires = "model")]
        weights: Option<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 1, value_parser = count(1, 100_000))]
        top: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        pixels: PixelArgs,
    },
    /// Show where in each photo the evidence for a class lies: one PNG per photo (the crop the
    /// model saw, a heatmap over it, the top classes), or the heatmaps as JSON.
    #[command(override_usage = "retrain explain MODEL.onnx IMAGE_OR_DIR... [OPTIONS]")]
    Explain {
        /// MODEL.onnx then the images (files or folders).
        #[arg(required = true, num_args = 2.., value_name = "PATH")]
        inputs: Vec<PathBuf>,
        /// The class to explain (default: each photo's top class).
        #[arg(long)]
        class: Option<String>,
        /// Where the pictures go.
        #[arg(long, default_value = "explained")]
        out: PathBuf,
        /// text: a line per photo; json: per photo its path, class, top classes and heatmap.
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
        /// Occlusion (49 more forward passes per photo) even where the class activation map
        /// (one forward pass, exact when the head is linear on a globally pooled map) applies.
        #[arg(long)]
        occlusion: bool,
        /// What the layers see, for one photo: a picture per stage of the backbone (its most
        /// active channels, early to late) and the first convolution's filters.
        #[arg(long, conflicts_with_all = ["class", "occlusion"])]
        layers: bool,
        #[command(flatten)]
        pixels: PixelArgs,
    },
    /// Write one self-contained HTML page about a trained model on a labelled folder (its val/
    /// folder when it has train/ and val/): accuracy with a 95% interval, per-class metrics, the
    /// confusion matrix, the top losses with heatmaps, the training curves, what the layers see,
    /// the first layer's filters and a map of the features. No network needed to open or mail it.
    #[command(override_usage = "retrain report MODEL.onnx LABELLED_DIR [--out report.html] [OPTIONS]")]
    Report {
        model: PathBuf,
        data_dir: PathBuf,
        /// The page to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
        /// text: a summary line; json: the page's figures.
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
        #[command(flatten)]
        input: InputArgs,
    },
    /// Measure on DATA_DIR how validation accuracy grows with photos per class, for each strategy
    /// (linear head, fine-tuning, training from scratch) and backbone: the learning curves as
    /// JSON (and an HTML page), with a one-paragraph reading. Continues an unfinished --out.
    #[command(arg_required_else_help = true)]
    Study {
        data_dir: PathBuf,
        /// Backbones to compare.
        #[arg(long, value_delimiter = ',', default_value = "mobilenet_v2", value_name = "A,B,...")]
        models: Vec<String>,
        /// A backbone's weights file, NAME=FILE (default: the cached download). Repeatable.
        #[arg(long, value_name = "NAME=FILE")]
        weights: Vec<String>,
        /// Strategies: linear (seconds, on cached features), finetune and scratch (minutes per run).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "linear", value_name = "A,B,...")]
        strategies: Vec<StrategyArg>,
        /// Training photos per class (numbers, and `all`).
        #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,all", value_name = "N,...")]
        shots: Vec<retrain_study::Shots>,
        /// Random subsets per shots value (`all` runs once).
        #[arg(long, default_value_t = 3, value_parser = count(1, 1000))]
        repeats: usize,
        /// Epochs of finetune and scratch runs (default: 7 and 30).
        #[arg(long, value_parser = count(1, 100_000))]
        epochs: Option<usize>,
        /// Also the linear head on each stage of the backbone (globally pooled), early to late:
        /// which layer transfers best to these photos (`train --cut STAGE` uses one).
        #[arg(long)]
        layers: bool,
        /// The study file: rows are added as they finish; an unfinished one is continued.
        #[arg(long, default_value = "study.json")]
        out: PathBuf,
        /// Also write the learning curves as an HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        input: InputArgs,
    },
    /// Serve model files over HTTP: retrain's JSON (/v1/predict), the KServe v2 / Triton protocol
    /// (/v2/models/NAME/infer), a drag-and-drop page (/), /healthz and /metrics. Concurrent
    /// requests are batched. Stops on SIGTERM or Ctrl-C after answering what is in flight.
    #[command(arg_required_else_help = true)]
    Serve {
        /// One or more model files; each is served under its file stem.
        #[arg(required = true, value_name = "MODEL.onnx")]
        models: Vec<PathBuf>,
        /// Address to listen on. 0.0.0.0 serves anyone on the network: give it a --token.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port (0: any free one; the address is printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Most images in one ONNX Runtime batch.
        #[arg(long, default_value_t = 32, value_parser = count(1, 4096))]
        max_batch: usize,
        /// How long a batch's first request waits for others, in milliseconds.
        #[arg(long, default_value_t = 2, value_parser = count(0, 10_000))]
        batch_wait_ms: usize,
        /// Largest request body in MB (larger: 413).
        #[arg(long, default_value_t = 20, value_parser = count(1, 4096))]
        max_body: usize,
        /// Requests waiting for a batch, per model, at most (more: 503 with Retry-After).
        #[arg(long, default_value_t = 256, value_parser = count(1, 1_000_000))]
        max_queue: usize,
        /// Seconds a request may take (longer: 408).
        #[arg(long, default_value_t = 30, value_parser = count(1, 86_400))]
        timeout: usize,
        /// Images in one request at most: files of a form, or a v2 tensor's first dimension (more: 413).
        #[arg(long, default_value_t = 64, value_parser = count(1, 100_000))]
        max_images: usize,
        /// Open connections at most; past it a new one is closed at once.
        #[arg(long, default_value_t = 4096, value_parser = count(1, 1_000_000))]
        max_connections: usize,
        /// Seconds for a request's headers to arrive; also how long an idle keep-alive
        /// connection is kept, and the TLS handshake's deadline.
        #[arg(long, default_value_t = 10, value_parser = count(1, 3_600))]
        header_timeout: usize,
        /// A file holding the bearer token every request but /healthz must carry
        /// (`Authorization: Bearer TOKEN`); or set RETRAIN_TOKEN. The page asks for it once.
        #[arg(long, value_name = "FILE")]
        token: Option<PathBuf>,
        /// Serve HTTPS with this PEM certificate (chain), with --tls-key.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Let pages from this origin (https://example.org, or *) call the API from a browser;
        /// by default no cross-origin call is allowed.
        #[arg(long, value_name = "ORIGIN")]
        cors: Option<String>,
        #[command(flatten)]
        pixels: PixelArgs,
    },
    /// Evaluate a trained model on a labelled folder.
    Eval {
        model: PathBuf,
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        input: InputArgs,
    },
    /// Write a model for a serving engine (see `retrain export triton --help`).
    Export {
        #[command(subcommand)]
        target: ExportTarget,
    },
    /// List the backbones retrain knows.
    Models {
        #[command(subcommand)]
        action: Option<ModelsAction>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// The backbone and its weights, for train and features.
#[derive(clap::Args)]
struct BackboneArgs {
    /// Backbone (see `retrain models`); `train --model auto` chooses one by cross-validation.
    #[arg(long, default_value = "mobilenet_v2")]
    model: String,
    /// Weights file (.pth or .safetensors, torchvision names) instead of the cached download;
    /// NAME=FILE gives another backbone's (candidates of --model auto). Repeatable.
    #[arg(long, value_name = "[NAME=]FILE")]
    weights: Vec<String>,
}

impl BackboneArgs {
    /// Sets the model and its weights (`FILE` for --model, `NAME=FILE` for any backbone).
    fn apply(&self, opts: &mut TrainOptions) -> Result<()> {
        opts.model = self.model.clone();
        for w in &self.weights {
            match w.split_once('=').filter(|(name, _)| retrain::find_backbone(name).is_ok()) {
                Some((name, file)) => {
                    opts.weights_for.insert(name.to_string(), PathBuf::from(file));
                }
                None if opts.weights.is_none() => opts.weights = Some(PathBuf::from(w)),
                None => bail!("--weights {w}: a second weights file needs the backbone's name, NAME=FILE"),
            }
        }
        if opts.model == retrain::select::AUTO && opts.weights.is_some() {
            bail!("--model auto: give each candidate's weights as NAME=FILE");
        }
        if opts.weights.is_none() {
            opts.weights = opts.weights_for.get(&opts.model).cloned();
        }
        Ok(())
    }
}

/// How the labelled photos are split into training and validation.
#[derive(clap::Args)]
struct SplitArgs {
    /// Validation folder (class sub-folders); default: DATA_DIR/val if DATA_DIR/train exists.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Fraction of each class held out for validation when there is no val folder.
    #[arg(long, default_value_t = 0.2, value_parser = number::<f64>(FRACTION))]
    val_fraction: f64,
    /// Seed of the validation split and of fine-tuning's shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Where features are cached.
#[derive(clap::Args)]
struct CacheArgs {
    /// Feature cache folder; many processes and machines may share one (a network filesystem,
    /// a mounted bucket). Default: $XDG_CACHE_HOME/retrain/features (else ~/.cache/...).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Recompute features instead of using the on-disk cache.
    #[arg(long, conflicts_with = "cache")]
    no_cache: bool,
}

impl CacheArgs {
    fn root(&self) -> Option<PathBuf> {
        match (&self.cache, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => Some(retrain::train::default_feature_cache()),
        }
    }
}

impl PrecisionArg {
    fn precision(self) -> retrain::precision::Precision {
        match self {
            PrecisionArg::Fp32 => retrain::precision::Precision::Fp32,
            PrecisionArg::Bf16 => retrain::precision::Precision::Bf16,
            PrecisionArg::Int8 => retrain::precision::Precision::Int8,
        }
    }
}

/// How big an image train, eval and predict decode.
#[derive(clap::Args)]
struct PixelArgs {
    /// Refuse images whose header claims more pixels than this (Pillow's limit by default):
    /// they are reported, never decoded.
    #[arg(long, default_value_t = retrain::DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    max_pixels: u64,
    /// Refuse image files larger than this many MB, from their size alone (a video beside
    /// the photos is reported, never read).
    #[arg(long, value_name = "MB", default_value_t = retrain::DEFAULT_MAX_FILE_SIZE >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    max_file_size: u64,
}

impl PixelArgs {
    fn limits(&self) -> retrain::Limits {
        retrain::Limits { max_pixels: self.max_pixels, max_file_size: self.max_file_size << 20 }
    }
}

/// How train and eval read a folder of labelled photos.
#[derive(clap::Args)]
struct InputArgs {
    #[command(flatten)]
    pixels: PixelArgs,
    /// Keep photos whose content appears under two classes (label conflicts) or in both
    /// training and validation (leaks); by default they are left out, and always reported.
    #[arg(long)]
    keep_duplicates: bool,
}

impl SplitArgs {
    fn apply(&self, opts: &mut TrainOptions) {
        opts.val_dir = self.val.clone();
        opts.val_fraction = self.val_fraction;
        opts.seed = self.seed;
    }
}

impl InputArgs {
    fn apply(&self, opts: &mut TrainOptions) {
        opts.max_pixels = self.pixels.max_pixels;
        opts.max_file_size = self.pixels.max_file_size << 20;
        opts.keep_duplicates = self.keep_duplicates;
    }
}

/// Where a number given on the command line must lie.
#[derive(Clone, Copy)]
struct Range {
    lo: f64,
    lo_open: bool,
    hi: f64,
    hi_open: bool,
}

const ANY: Range = Range { lo: f64::NEG_INFINITY, lo_open: true, hi: f64::INFINITY, hi_open: true };
const POSITIVE: Range = Range { lo: 0.0, lo_open: true, hi: f64::INFINITY, hi_open: true };
const NON_NEGATIVE: Range = Range { lo: 0.0, lo_open: false, hi: f64::INFINITY, hi_open: true };
const FRACTION: Range = Range { lo: 0.0, lo_open: true, hi: 1.0, hi_open: true };
const BELOW_ONE: Range = Range { lo: 0.0, lo_open: false, hi: 1.0, hi_open: true };

/// A finite number within `r`, or a message saying where it must lie.
fn number<T>(r: Range) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + Into<f64> + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
        let x: f64 = v.into();
        let above = if r.lo_open { x > r.lo } else { x >= r.lo };
        let below = if r.hi_open { x < r.hi } else { x <= r.hi };
        if !x.is_finite() || !above || !below {
            let lo = if r.lo.is_finite() {
                format!("{} {}", if r.lo_open { ">" } else { ">=" }, r.lo)
            } else {
                String::new()
            };
            let hi = if r.hi.is_finite() {
                format!("{} {}", if r.hi_open { "<" } else { "<=" }, r.hi)
            } else {
                String::new()
            };
            let bounds = [lo, hi].into_iter().filter(|b| !b.is_empty()).collect::<Vec<_>>().join(" and ");
            return Err(if bounds.is_empty() { "must be finite".into() } else { format!("must be finite, {bounds}") });
        }
        Ok(v)
    }
}

/// A whole number in `lo..=hi`.
fn count(lo: u64, hi: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(lo..=hi)
}

#[derive(Subcommand)]
enum ExportTarget {
    /// A Triton model repository (DIR/NAME/1/model.onnx, config.pbtxt, labels.txt) and a KServe
    /// InferenceService YAML beside it. Run it with `tritonserver --model-repository DIR`.
    Triton {
        model: PathBuf,
        dir: PathBuf,
        /// Triton's max_batch_size.
        #[arg(long, default_value_t = 32, value_parser = count(1, 4096))]
        max_batch: usize,
        /// Triton's dynamic batching delay, in milliseconds.
        #[arg(long, default_value_t = 2, value_parser = count(0, 10_000))]
        batch_wait_ms: usize,
        /// Where KServe will find the repository (a copy of DIR).
        #[arg(long, default_value = "pvc://retrain-models")]
        storage_uri: String,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Download a backbone's official weights into the cache (sha256-checked).
    Fetch { name: String },
    /// Register any ONNX image model (timm, Keras via tf2onnx, ...) as a backbone for transfer.
    Import {
        file: PathBuf,
        /// The name to use with --model.
        #[arg(long)]
        name: String,
        /// Input height and width the model expects.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
        input_size: u32,
        /// Shorter side before the center crop (default: input size × 8/7).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
        resize: Option<u32>,
        /// Per-channel mean on 0..1 values, e.g. 0.485,0.456,0.406.
        #[arg(long, value_delimiter = ',', default_values_t = [0.485, 0.456, 0.406], value_parser = number::<f32>(ANY))]
        mean: Vec<f32>,
        /// Per-channel standard deviation on 0..1 values.
        #[arg(long, value_delimiter = ',', default_values_t = [0.229, 0.224, 0.225], value_parser = number::<f32>(POSITIVE))]
        std: Vec<f32>,
        /// The value to take features from (default: the model's first output), e.g. the
        /// global-pool output before the classifier.
        #[arg(long)]
        feature_output: Option<String>,
        /// Input layout: nchw (PyTorch exports) or nhwc (Keras / tf2onnx exports).
        #[arg(long, default_value = "nchw")]
        layout: String,
    },
}

/// Fine-tuning allocates and frees activation-sized buffers (megabytes) in every layer of every
/// step. glibc's malloc serves those from fresh mmaps and trims the heap after them, so each is
/// page-faulted and zeroed anew: a sixth of a fine-tuning run. Keeping freed memory for reuse
/// costs about 0.6 GB more peak memory there; feature extraction keeps glibc's defaults.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The bearer token of `retrain serve`: from `--token FILE` (its first line), else from
/// RETRAIN_TOKEN; none when neither is given.
fn serve_token(file: Option<&Path>) -> Result<Option<String>> {
    let (token, from) = match file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("--token {}: cannot read it", f.display()))?;
            (text.lines().next().unwrap_or("").trim().to_string(), format!("--token {}", f.display()))
        }
        None => match std::env::var("RETRAIN_TOKEN") {
            Ok(t) => (t.trim().to_string(), "RETRAIN_TOKEN".to_string()),
            Err(_) => return Ok(None),
        },
    };
    if token.len() < 16 || token.chars().any(|c| !c.is_ascii_graphic()) {
        bail!("{from}: a token is at least 16 printable ASCII characters without spaces");
    }
    Ok(Some(token))
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One readable line, never a panic trace. The library's errors already carry their
        // cause in their message, so the chain is not printed again.
        eprintln!("error: {e}");
        let interrupted = matches!(e.downcast_ref::<retrain::Error>(), Some(retrain::Error::Interrupted { .. }));
        std::process::exit(if interrupted { 130 } else { 1 });
    }
}

fn run(cli: Cli) -> Result<()> {
    let threads = cli.threads.unwrap_or_else(retrain::default_threads);
    match cli.command {
        Command::Train {
            data_dir,
            backbone,
            split,
            out,
            report,
            html,
            class_weights,
            l2,
            lr,
            batch,
            cache,
            strategy,
            unfreeze,
            epochs,
            backbone_lr,
            optimizer,
            weight_decay,
            warmup_epochs,
            label_smoothing,
            ema,
            dropout,
            batchnorm,
            patience,
            cut,
            candidates,
            augment,
            precision,
            run_dir,
            resume,
            input,
        } => {
            let mut opts = match (&resume, &data_dir) {
                (Some(dir), _) => retrain::finetune::resume_options(dir)?,
                (None, Some(data_dir)) => {
                    let mut opts = TrainOptions::new(data_dir, &backbone.model, &out);
                    split.apply(&mut opts);
                    backbone.apply(&mut opts)?;
                    opts.candidates = candidates.unwrap_or_default();
                    opts.cut = cut;
                    opts.feature_cache = cache.root();
                    opts.batch = batch;
                    opts.head.balanced = class_weights == ClassWeights::Auto;
                    opts.head.l2 = l2;
                    opts.strategy = match strategy {
                        StrategyArg::Linear => Strategy::Linear,
                        StrategyArg::Finetune => Strategy::Finetune,
                        StrategyArg::Full => Strategy::Full,
                        StrategyArg::Scratch => Strategy::Scratch,
                    };
                    let d = retrain::train::tune_defaults(opts.strategy);
                    if let Some(lr) = lr {
                        if opts.strategy == Strategy::Linear {
                            opts.head.learning_rate = lr;
                        } else {
                            opts.tune.lr = lr;
                        }
                    }
                    opts.tune.body_lr = backbone_lr.unwrap_or(opts.tune.lr * d.body_lr / d.lr);
                    opts.unfreeze = unfreeze;
                    opts.tune.epochs = epochs.unwrap_or(d.epochs);
                    opts.tune.batch = batch;
                    opts.tune.optimizer = match optimizer {
                        OptimizerArg::Adamw => retrain_tune_kind::AdamW,
                        OptimizerArg::Sgd => retrain_tune_kind::Sgd,
                    };
                    opts.tune.weight_decay = weight_decay;
                    opts.tune.warmup_epochs = warmup_epochs;
                    opts.tune.label_smoothing = label_smoothing;
                    opts.tune.ema_epochs = ema.unwrap_or(d.ema_epochs);
                    opts.tune.fresh_statistics = d.fresh_statistics;
                    opts.tune.dropout = dropout;
                    opts.tune.batchnorm = match batchnorm {
                        BatchNormArg::Train => retrain_tune_bn::Train,
                        BatchNormArg::Frozen => retrain_tune_bn::Frozen,
                    };
                    // Without early stopping (scratch), every epoch given runs.
                    opts.tune.patience = patience.unwrap_or(if opts.strategy == Strategy::Scratch {
                        opts.tune.epochs
                    } else {
                        d.patience
                    });
                    opts.tune.seed = split.seed;
                    opts.augment = match augment {
                        AugmentArg::None => retrain::Augment::None,
                        AugmentArg::Light => retrain::Augment::Light,
                        AugmentArg::Standard => retrain::Augment::Standard,
                    };
                    opts.precision = precision.precision();
                    opts.run_dir = run_dir;
                    input.apply(&mut opts);
                    opts
                }
                (None, None) => bail!("give DATA_DIR, or --resume RUN_DIR"),
            };
            opts.threads = threads;
            opts.quiet = cli.quiet;
            if opts.strategy != Strategy::Linear {
                keep_freed_memory();
                opts.stop = Some(stop_on_ctrl_c()?);
            }
            let r = retrain::train::train(&opts)?;
            if let Some(path) = &report {
                let json = serde_json::to_string_pretty(&r)?;
                retrain::train::write_file(path, json.as_bytes())?;
            }
            if let (Some(sel), false) = (&r.model_selection, cli.quiet) {
                println!(
                    "--model auto: {}-fold cross-validation on the {} training photos",
                    sel.folds, sel.train_images
                );
                for c in &sel.candidates {
                    println!(
                        "  {:<20} accuracy {:.3} ± {:.3}  {:>6.0} images/s  {:>6.1} MB{}",
                        c.model,
                        c.cv_accuracy,
                        c.cv_sd,
                        c.images_per_second,
                        c.model_mb,
                        if c.model == sel.chosen { "  <- chosen" } else { "" }
                    );
                }
                println!("chose {}: {}", sel.chosen, sel.reason);
            }
            if !cli.quiet {
                println!(
                    "{}: {} classes, {} train / {} val images ({} skipped{}), features {} computed / {} cached",
                    r.backbone,
                    r.class_names.len(),
                    r.train_images,
                    r.val_images,
                    r.skipped.len(),
                    duplicates_note(&r),
                    r.features_computed,
                    r.features_cached
                );
                match &r.finetune {
                    Some(f) => println!(
                        "val accuracy {:.4} (train {:.4}{}), best epoch {} of {} ({}: {} block(s) from {}); checkpoints in {}",
                        r.val_accuracy,
                        r.train_accuracy,
                        if f.best_epoch > 0 { ", augmented" } else { ", linear head" },
                        f.best_epoch,
                        f.epochs_run,
                        match f.strategy {
                            Strategy::Full => "full fine-tuning",
                            Strategy::Scratch => "from scratch",
                            _ => "fine-tuning",
                        },
                        f.unfrozen_blocks,
                        f.first_trained_block,
                        f.run_dir.display()
                    ),
                    None => println!(
                        "val accuracy {:.4} (train {:.4}), best step {} of {}",
                        r.val_accuracy, r.train_accuracy, r.best_step, r.steps_run
                    ),
                }
                println!("wrote {} in {:.2}s", r.model.display(), r.timings.total);
            }
            if let Some(page) = &html {
                let set = retrain::eval::Labelled {
                    root: opts.val_dir.clone().unwrap_or_else(|| opts.data_dir.clone()),
                    files: r.val_set.iter().map(|(p, _)| p.clone()).collect(),
                    truth: r.val_set.iter().map(|&(_, l)| l).collect(),
                    skipped: Vec::new(),
                    conflicts: Vec::new(),
                };
                let training = retrain_report::Training { split: r.split.clone(), train_images: r.train_images };
                let limits = opts.limits();
                let (_, line) = write_report(&r.model, set, Some(training), page, limits, threads, cli.quiet)?;
                if !cli.quiet {
                    println!("{line}");
                }
            }
        }
        Command::Features { data_dir, backbone, shard, cache, split, batch, precision, manifest, format, input } => {
            let mut opts = TrainOptions::new(&data_dir, &backbone.model, std::path::Path::new("unused.onnx"));
            backbone.apply(&mut opts)?;
            split.apply(&mut opts);
            input.apply(&mut opts);
            opts.feature_cache = cache.root();
            opts.batch = batch;
            opts.precision = precision.precision();
            opts.threads = threads;
            opts.quiet = cli.quiet;
            let shard = shard.unwrap_or(retrain_shard::Shard::ALL);
            // A manifest per shard usually goes to a folder of them on the shared volume.
            if let Some(dir) =
                manifest.as_deref().and_then(std::path::Path::parent).filter(|d| !d.as_os_str().is_empty())
            {
                create_folder(dir)?;
            }
            let bar = retrain::progress_bar(0, &format!("shard {shard}"), cli.quiet);
            let m = retrain_shard::extract(&opts, shard, &bar)?;
            bar.finish_and_clear();
            for s in m.skipped.iter().filter(|_| !cli.quiet) {
                eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
            }
            let json = serde_json::to_string_pretty(&m)?;
            if let Some(path) = &manifest {
                retrain::train::write_file(path, json.as_bytes())?;
            }
            match format {
                TextOrJson::Json => println!("{json}"),
                TextOrJson::Text if cli.quiet => {}
                TextOrJson::Text => println!(
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
        }
        Command::Predict { inputs, model, weights, top, format, pixels } => {
            let (mut c, paths) = match model {
                Some(name) => {
                    let b = retrain::backbone::LoadedBackbone::load(&name, weights.as_deref(), cli.quiet)?;
                    (retrain::model::Classifier::imagenet(&b, threads)?, inputs)
                }
                None => {
                    if inputs.len() < 2 {
                        bail!("give MODEL.onnx and at least one image (or --model NAME for an ImageNet backbone)");
                    }
                    (retrain::model::Classifier::open(&inputs[0], threads)?, inputs[1..].to_vec())
                }
            };
            c.limits = pixels.limits();
            let bar = retrain::progress_bar(0, "predict", cli.quiet);
            let (preds, fails) = retrain::predict::predict(&mut c, &paths, top, &bar)?;
            bar.finish_and_clear();
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"predictions": preds, "failed": fails}))?
                ),
                Format::Csv => print!("{}", retrain::predict::to_csv(&preds)),
                Format::Text => {
                    for p in &preds {
                        let cls: Vec<String> =
                            p.top.iter().map(|r| format!("{} {:.4}", shown_str(&r.class), r.probability)).collect();
                        println!("{}\t{}", shown(&p.path), cls.join("\t"));
                    }
                }
            }
            failures(&fails, preds.len(), &paths, cli.quiet)?;
        }
        Command::Explain { inputs, out, format, layers: true, pixels, .. } => {
            explain_layers(&inputs, &out, format, pixels.limits(), threads, cli.quiet)?
        }
        Command::Explain { inputs, class, out, format, occlusion, pixels, .. } => {
            explain(&inputs, class.as_deref(), &out, format, occlusion, pixels.limits(), threads, cli.quiet)?
        }
        Command::Study {
            data_dir,
            models,
            weights,
            strategies,
            shots,
            repeats,
            epochs,
            layers,
            out,
            html,
            split,
            cache,
            input,
        } => {
            let mut base = TrainOptions::new(&data_dir, &models[0], &out);
            split.apply(&mut base);
            input.apply(&mut base);
            for w in &weights {
                match w.split_once('=') {
                    Some((name, file)) if retrain::find_backbone(name).is_ok() => {
                        base.weights_for.insert(name.into(), PathBuf::from(file));
                    }
                    _ => bail!("--weights {w}: give NAME=FILE, NAME one of the backbones (see `retrain models`)"),
                }
            }
            base.feature_cache = cache.root();
            base.threads = threads;
            base.quiet = cli.quiet;
            let strategies = strategies
                .into_iter()
                .map(|s| match s {
                    StrategyArg::Linear => Strategy::Linear,
                    StrategyArg::Finetune => Strategy::Finetune,
                    StrategyArg::Full => Strategy::Full,
                    StrategyArg::Scratch => Strategy::Scratch,
                })
                .collect();
            keep_freed_memory();
            let opts = retrain_study::StudyOptions {
                base,
                models,
                strategies,
                shots,
                repeats,
                epochs,
                layers,
                out: out.clone(),
            };
            let study = retrain_study::run(&opts)?;
            if let Some(page) = &html {
                retrain::train::write_file(page, retrain_study::html(&study).as_bytes())?;
            }
            if !cli.quiet {
                println!(
                    "{:<20} {:<9} {:>6} {:>7} {:>15} {:>9}",
                    "backbone", "strategy", "shots", "images", "val accuracy", "seconds"
                );
                for c in &study.summary {
                    println!(
                        "{:<20} {:<9} {:>6} {:>7.0} {:>7.3} ± {:.3} {:>9.1}",
                        c.model,
                        serde_json::to_value(c.strategy)?.as_str().unwrap_or("?"),
                        c.shots.to_string(),
                        c.train_images,
                        c.val_accuracy,
                        c.val_accuracy_sd,
                        c.seconds
                    );
                }
                println!("{}", study.reading);
                println!(
                    "wrote {}{}",
                    out.display(),
                    html.map(|h| format!(" and {}", h.display())).unwrap_or_default()
                );
            }
        }
        Command::Report { model, data_dir, out, format, input } => {
            let set = retrain::eval::Labelled::read(&data_dir, &model, input.keep_duplicates)?;
            let (summary, line) = write_report(&model, set, None, &out, input.pixels.limits(), threads, cli.quiet)?;
            match format {
                TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
                TextOrJson::Text if !cli.quiet => println!("{line}"),
                TextOrJson::Text => {}
            }
        }
        Command::Serve {
            models,
            host,
            port,
            max_batch,
            batch_wait_ms,
            max_body,
            max_queue,
            timeout,
            max_images,
            max_connections,
            header_timeout,
            token,
            tls_cert,
            tls_key,
            cors,
            pixels,
        } => {
            let token = serve_token(token.as_deref())?;
            let tls = tls_cert.zip(tls_key).map(|(cert, key)| retrain_serve::TlsFiles { cert, key });
            let scheme = if tls.is_some() { "https" } else { "http" };
            let open = token.is_none();
            let config = retrain_serve::Config {
                host: host.clone(),
                port,
                batching: retrain_serve::Batching {
                    threads,
                    max_batch,
                    wait: Duration::from_millis(batch_wait_ms as u64),
                    max_queue,
                },
                max_body: max_body << 20,
                timeout: Duration::from_secs(timeout as u64),
                decoders: threads,
                limits: pixels.limits(),
                max_images,
                connections: retrain_serve::Connections {
                    max: max_connections,
                    header_timeout: Duration::from_secs(header_timeout as u64),
                },
                token,
                tls,
                cors,
            };
            retrain_serve::serve(&models, config, |addr| {
                if addr.ip().is_unspecified() && open {
                    eprintln!("warning: listening on every network interface without --token: anyone who can reach this machine can use the models");
                }
                println!("listening on {scheme}://{addr}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            })?;
        }
        Command::Export { target: ExportTarget::Triton { model, dir, max_batch, batch_wait_ms, storage_uri } } => {
            let opts =
                retrain_serve::TritonOptions { max_batch, queue_delay_us: batch_wait_ms as u64 * 1000, storage_uri };
            let e = retrain_serve::export_triton(&model, &dir, &opts)?;
            if !cli.quiet {
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
        }
        Command::Eval { model, data_dir, format, input } => {
            let mut c = retrain::model::Classifier::open(&model, threads)?;
            c.limits = input.pixels.limits();
            let bar = retrain::progress_bar(0, "eval", cli.quiet);
            let ev = retrain::eval::evaluate(&mut c, &data_dir, input.keep_duplicates, &bar)?;
            bar.finish_and_clear();
            if let Some(line) = retrain::dataset::duplicates::describe_conflicts(&ev.conflicts).filter(|_| !cli.quiet) {
                let what = if ev.duplicates_kept {
                    "kept (--keep-duplicates)"
                } else {
                    "left out of the metrics; --format json lists them under `conflicts`"
                };
                eprintln!("warning: {line}: {what}");
            }
            for s in &ev.skipped {
                if !cli.quiet {
                    eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
                }
            }
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&ev)?),
                Format::Csv => print!("{}", ev.metrics.to_csv()),
                Format::Text => print!("{} images in {}\n{}", ev.images, shown(&ev.data), ev.metrics.to_text()),
            }
        }
        Command::Models { action: Some(action), .. } => models_action(action, threads, cli.quiet)?,
        Command::Models { action: None, format } => list_models(format)?,
    }
    Ok(())
}

/// Warns of files skipped inside folders; fails on files named on the command line that could
/// not be read, or when no image was found at all.
fn failures(fails: &[retrain::predict::Failure], found: usize, inputs: &[PathBuf], quiet: bool) -> Result<()> {
    for f in fails.iter().filter(|f| !f.explicit && !quiet) {
        eprintln!("warning: skipped {}: {}", f.path.display(), f.reason);
    }
    let explicit: Vec<String> =
        fails.iter().filter(|f| f.explicit).map(|f| format!("{}: {}", f.path.display(), f.reason)).collect();
    if !explicit.is_empty() {
        bail!("{}", explicit.join("; "));
    }
    if found == 0 {
        bail!("no images found in {}", inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

/// Draws the HTML report and writes it whole; returns its figures and a line saying where it went.
fn write_report(
    model: &std::path::Path,
    set: retrain::eval::Labelled,
    training: Option<retrain_report::Training>,
    out: &std::path::Path,
    limits: retrain::Limits,
    threads: usize,
    quiet: bool,
) -> Result<(retrain_report::Summary, String)> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_folder(dir)?;
    }
    let opts = retrain_report::Options { threads, limits, ..Default::default() };
    let bar = retrain::progress_bar(0, "report", quiet);
    let (page, summary) = retrain_report::build(model, set, training, opts, &bar)?;
    bar.finish_and_clear();
    retrain::train::write_file(out, page.as_bytes())?;
    for s in summary.skipped.iter().filter(|_| !quiet) {
        eprintln!("warning: skipped {}: {}", s.path.display(), s.reason);
    }
    let [lo, hi] = summary.accuracy_interval;
    let line = format!(
        "{}: accuracy {:.4} (95% interval {:.3}–{:.3}) on {} photos; wrote {} ({} KB) in {:.1}s",
        summary.data.display(),
        summary.accuracy,
        lo,
        hi,
        summary.images,
        out.display(),
        page.len() / 1024,
        summary.seconds
    );
    Ok((summary, line))
}

fn create_folder(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))
}

/// Encodes and writes a picture whole.
fn write_png(img: &image::RgbImage, path: &std::path::Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot encode", path.display()))?;
    Ok(retrain::train::write_file(path, &bytes)?)
}

fn explain_layers(
    inputs: &[PathBuf],
    out: &std::path::Path,
    format: TextOrJson,
    limits: retrain::Limits,
    threads: usize,
    quiet: bool,
) -> Result<()> {
    if inputs.len() != 2 || inputs[1].is_dir() {
        bail!("--layers takes MODEL.onnx and one photo");
    }
    let l = retrain_explain::layers(&inputs[0], &inputs[1], threads, limits)?
        .map_err(|e| anyhow::anyhow!("{}: {}", inputs[1].display(), e.reason()))?;
    create_folder(out)?;
    let mut stages = Vec::new();
    for (i, s) in l.stages.iter().enumerate() {
        let png = out.join(format!("stage-{}.png", i + 1));
        write_png(&retrain_explain::render_stage(&l, i), &png)?;
        let mut v = serde_json::to_value(s)?;
        v["picture"] = serde_json::to_value(names::json::Json(&png))?;
        stages.push((v, png));
    }
    let filters = match &l.filters {
        Some(f) => {
            let png = out.join("filters.png");
            write_png(&retrain_explain::render_filters(f), &png)?;
            Some(png)
        }
        None => None,
    };
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({"path": names::json::Json(&inputs[1]), "stages": stages.iter().map(|(v, _)| v).collect::<Vec<_>>(), "filters": filters.as_deref().map(names::json::Json)})
        ),
        TextOrJson::Text => {
            for (v, png) in &stages {
                println!("{}x{} {} channels\t{}", v["size"][0], v["size"][1], v["channels"], shown(png));
            }
            match &filters {
                Some(png) => println!("first convolution's filters\t{}", shown(png)),
                None if !quiet => eprintln!("warning: the first convolution's weights are not plain floats (an int8 model?): no filters picture"),
                None => {}
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn explain(
    inputs: &[PathBuf],
    class: Option<&str>,
    out: &std::path::Path,
    format: TextOrJson,
    occlusion: bool,
    limits: retrain::Limits,
    threads: usize,
    quiet: bool,
) -> Result<()> {
    let mut ex = retrain_explain::Explainer::open(&inputs[0], threads, occlusion)?;
    ex.limits = limits;
    let class = class.map(|c| ex.class_index(c)).transpose()?;
    let (files, mut fails) = retrain::predict::expand_inputs(&inputs[1..]);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let bar = retrain::progress_bar(0, "explain", quiet);
    let results = ex.explain(&paths, class, &bar)?;
    bar.finish_and_clear();
    create_folder(out)?;
    let mut done = Vec::new();
    let mut names = std::collections::HashSet::new();
    for ((path, explicit), r) in files.into_iter().zip(results) {
        match r {
            Ok(e) => {
                // Photos of the same name from different folders get -2, -3 …
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
                let mut name = format!("{stem}.png");
                let mut n = 1;
                while !names.insert(name.clone()) {
                    n += 1;
                    name = format!("{stem}-{n}.png");
                }
                let png = out.join(name);
                write_png(&retrain_explain::render(&e), &png)?;
                done.push((e, png));
            }
            Err(err) => fails.push(retrain::predict::Failure { reason: err.reason(), path, explicit }),
        }
    }
    match format {
        TextOrJson::Json => {
            let rows: Vec<_> = done
                .iter()
                .map(|(e, png)| {
                    let mut v = serde_json::to_value(e).expect("explanations serialise");
                    v["picture"] = serde_json::to_value(names::json::Json(png)).expect("paths serialise");
                    v
                })
                .collect();
            println!("{}", serde_json::to_string(&rows)?);
        }
        TextOrJson::Text => {
            for (e, png) in &done {
                let top =
                    e.top.first().map(|r| format!("{} {:.4}", shown_str(&r.class), r.probability)).unwrap_or_default();
                println!("{}\t{}\texplained `{}`\t{}", shown(&e.path), top, shown_str(&e.class), shown(png));
            }
            if !quiet && !done.is_empty() {
                eprintln!("{} picture(s) in {} ({})", done.len(), out.display(), ex.method.name());
            }
        }
    }
    failures(&fails, done.len(), &inputs[1..], quiet)
}

/// ", 4 label conflicts left out" for the summary line, when there were any.
fn duplicates_note(r: &retrain::report::Report) -> String {
    let verb = if r.duplicates_kept { "kept" } else { "left out" };
    let mut parts = Vec::new();
    if !r.conflicts.is_empty() {
        parts.push(format!("{} label conflict(s) {verb}", r.conflicts.len()));
    }
    if !r.leaks.is_empty() {
        parts.push(format!("{} train/val leak(s) {verb}", r.leaks.len()));
    }
    parts.iter().map(|p| format!(", {p}")).collect()
}

/// Ctrl-C once: finish the current batch, checkpoint, exit. Twice: exit at once.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this batch (Ctrl-C again to quit without a checkpoint)");
    })?;
    Ok(stop)
}

fn list_models(format: Format) -> Result<()> {
    let all = retrain::all_backbones();
    let cached = |b: &retrain::Backbone| b.imported.is_some() || b.weights.is_cached();
    if format == Format::Json {
        let rows: Vec<_> = all
            .iter()
            .map(|b| serde_json::json!({"backbone": b, "weights": b.weights.file_name, "sha256": b.weights.sha256, "sources": b.weight_sources(), "cached": cached(b)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<19} {:>5} {:>8} {:>6} {:>8}  {:<22} {:<6} source",
        "name", "input", "params", "top-1", "features", "preprocessing", "cached"
    );
    for b in all {
        let p = b.preprocess;
        let interp = match p.interpolation {
            retrain_pixels_filter::Bilinear => "bilinear",
            retrain_pixels_filter::Bicubic => "bicubic",
        };
        let params = if b.params > 0 { format!("{:.1}M", b.params as f64 / 1e6) } else { "-".into() };
        let top1 = if b.imagenet_top1.is_finite() { format!("{:.1}%", b.imagenet_top1) } else { "-".into() };
        let source = match &b.imported {
            Some(i) => i.onnx.display().to_string(),
            None => b.weight_sources().first().cloned().unwrap_or_default(),
        };
        println!(
            "{:<19} {:>5} {:>8} {:>6} {:>8}  {:<22} {:<6} {}",
            b.name,
            p.crop,
            params,
            top1,
            b.feature_dim,
            format!("{}→{} {interp}", p.resize, p.crop),
            if cached(b) { "yes" } else { "no" },
            source
        );
    }
    Ok(())
}

fn models_action(action: ModelsAction, threads: usize, quiet: bool) -> Result<()> {
    match action {
        ModelsAction::Fetch { name } => {
            let b = retrain::find_backbone(&name)?;
            let path = retrain_weights_fetch(b, quiet)?;
            println!("{name}: {}", path.display());
        }
        ModelsAction::Import { file, name, input_size, resize, mean, std, feature_output, layout } => {
            let layout = match layout.as_str() {
                "nchw" => retrain::imported::Layout::Nchw,
                "nhwc" => retrain::imported::Layout::Nhwc,
                other => bail!("--layout must be nchw or nhwc, got {other}"),
            };
            if mean.len() != 3 || std.len() != 3 {
                bail!("--mean and --std take three comma-separated values (R,G,B)");
            }
            let spec = retrain::imported::ImportSpec {
                name,
                input_size,
                resize: resize.unwrap_or((input_size as f32 * 8.0 / 7.0).round() as u32),
                mean: [mean[0] * 255.0, mean[1] * 255.0, mean[2] * 255.0],
                std: [std[0] * 255.0, std[1] * 255.0, std[2] * 255.0],
                feature_output,
                layout,
            };
            let b = retrain::imported::import(&file, &spec, threads)?;
            println!(
                "imported {} ({} features from `{}`); train with --model {}",
                b.name, b.feature_dim, b.feature_layer, b.name
            );
        }
    }
    Ok(())
}

fn retrain_weights_fetch(b: &retrain::Backbone, quiet: bool) -> Result<PathBuf> {
    if b.imported.is_some() {
        bail!("{} is an imported model: its weights are in its ONNX file", b.name);
    }
    Ok(retrain::fetch_weights(b, quiet)?)
}
