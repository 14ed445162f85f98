//! Every flag of the command line, declared once: a struct per subcommand, shared groups
//! (backbone, split, cache, batch, pixels, batching), one conversion per value enum into the
//! library's type. Defaults come from the library wherever it has one.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use retrain::{Recipe, Strategy, TuneConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "retrain",
    version,
    about = "Transfer learning for image classifiers: a folder of labelled photos in, a trained ONNX classifier out."
)]
pub struct Cli {
    /// No progress bars or warnings; errors are still printed.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Worker threads (decoding and ONNX Runtime); default: all cores.
    #[arg(long, global = true, value_parser = count(1, 4096))]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a classifier on DATA_DIR (one sub-folder per class, or train/ and val/ folders of them).
    Train(TrainArgs),
    /// Compute and cache the features `train` will need, for all of DATA_DIR or one shard of it:
    /// run shards 0/N … N-1/N on N machines sharing --cache, then `train --cache` anywhere.
    Features(FeaturesArgs),
    /// Predict the class of images (files or folders) with a trained MODEL.onnx, or with a
    /// backbone's own ImageNet classifier (`--model NAME`, no trained head).
    #[command(
        override_usage = "retrain predict MODEL.onnx PATH... [OPTIONS]\n       retrain predict --model NAME PATH... [OPTIONS]"
    )]
    Predict(PredictArgs),
    /// Show where in each photo the evidence for a class lies: one PNG per photo (the crop the
    /// model saw, a heatmap over it, the top classes), or the heatmaps as JSON.
    #[command(override_usage = "retrain explain MODEL.onnx IMAGE_OR_DIR... [OPTIONS]")]
    Explain(ExplainArgs),
    /// Write one self-contained HTML page about a trained model on a labelled folder (its val/
    /// folder when it has train/ and val/): accuracy with a 95% interval, per-class metrics, the
    /// confusion matrix, the top losses with heatmaps, the training curves, what the layers see,
    /// the first layer's filters and a map of the features. No network needed to open or mail it.
    #[command(override_usage = "retrain report MODEL.onnx LABELLED_DIR [--out report.html] [OPTIONS]")]
    Report(ReportArgs),
    /// Measure on DATA_DIR how validation accuracy grows with photos per class, for each strategy
    /// (linear head, fine-tuning, training from scratch) and backbone: the learning curves as
    /// JSON (and an HTML page), with a one-paragraph reading. Continues an unfinished --out.
    #[command(arg_required_else_help = true)]
    Study(StudyArgs),
    /// Serve model files over HTTP: retrain's JSON (/v1/predict), the KServe v2 / Triton protocol
    /// (/v2/models/NAME/infer), a drag-and-drop page (/), /healthz and /metrics. Concurrent
    /// requests are batched. Stops on SIGTERM or Ctrl-C after answering what is in flight.
    #[command(arg_required_else_help = true)]
    Serve(ServeArgs),
    /// Evaluate a trained model on a labelled folder.
    Eval(EvalArgs),
    /// Find what is wrong with a labelled folder before it costs accuracy: photos likely filed
    /// under the wrong class, near-duplicates (conflicts across classes, leaks across train and
    /// val), strays of none of the classes, class imbalance, tiny images; with --unlabelled,
    /// which photos to label next. Writes a page to tick decisions on; `audit apply` carries
    /// them out (moves, never deletes), `audit undo` takes them back.
    #[command(
        override_usage = "retrain audit DATA_DIR [--out audit.html] [--format text|json] [OPTIONS]\n       retrain audit apply DECISIONS [--data DATA_DIR]\n       retrain audit undo DATA_DIR",
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true
    )]
    Audit(AuditArgs),
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

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Folder of class folders (not needed with --resume).
    #[arg(required_unless_present = "resume")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Where to write the model.
    #[arg(long, default_value = "model.onnx")]
    pub out: PathBuf,
    /// Write a JSON report (accuracy, per-class metrics, confusion matrix, timings, skipped files).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the HTML report on the validation photos (see `retrain report`).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub head: HeadArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub tuning: TuningArgs,
    /// End the backbone after this stage (1-based, early to late; see `retrain study --layers`):
    /// a linear head on its globally pooled map.
    #[arg(long, value_parser = count(1, 1000), value_name = "STAGE")]
    pub cut: Option<usize>,
    /// Backbones --model auto cross-validates (default: mobilenet_v2, efficientnet_lite0/1/2,
    /// resnet50, efficientnet_b0, convnext_tiny, those whose weights are given or cached).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub candidates: Option<Vec<String>>,
    /// Training-time augmentation for fine-tuning (evaluation always uses the plain preprocessing).
    #[arg(long, value_enum, default_value_t = AugmentArg::Standard)]
    pub augment: AugmentArg,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where fine-tuning checkpoints go (default: OUT with the extension .run).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the fine-tuning run checkpointed in RUN_DIR (its options come from there).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "data_dir")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
    /// single-label: one class per photo (softmax). multi-label: any number per photo (one
    /// sigmoid per class, each with a threshold tuned for F1 by cross-validation on the
    /// training split). auto: multi-label when the label file gives any photo several labels.
    #[arg(long, value_enum, default_value_t = TaskArg::Auto)]
    pub task: TaskArg,
}

/// The linear head's settings (and `--lr`, shared with fine-tuning).
#[derive(clap::Args)]
pub struct HeadArgs {
    /// Weight classes inversely to their frequency.
    #[arg(long, value_enum, default_value_t = ClassWeights::Auto)]
    pub class_weights: ClassWeights,
    /// L2 penalty on the head's weights.
    #[arg(long, value_parser = number::<f32>(NON_NEGATIVE), help = help::l2())]
    pub l2: Option<f32>,
    #[arg(long, value_parser = number::<f64>(POSITIVE), help = help::lr())]
    pub lr: Option<f64>,
}

/// The strategy and fine-tuning's settings: what is not given comes from
/// [`Recipe::for_strategy`].
#[derive(clap::Args)]
pub struct TuningArgs {
    /// linear: a head on frozen features. finetune: then the last --unfreeze blocks with the
    /// head. full: then every layer. scratch: every layer from random initialisation (the
    /// baseline transfer is measured against; BatchNorm in training mode, 30 epochs).
    #[arg(long, value_enum, default_value_t = StrategyArg::Linear)]
    pub strategy: StrategyArg,
    #[arg(long, value_parser = count(1, 100_000), help = help::unfreeze())]
    pub unfreeze: Option<usize>,
    #[arg(long, value_parser = count(1, 100_000), help = help::epochs())]
    pub epochs: Option<usize>,
    #[arg(long, value_parser = number::<f64>(POSITIVE), help = help::backbone_lr())]
    pub backbone_lr: Option<f64>,
    /// Fine-tuning optimiser (sgd: with momentum 0.9).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
    pub optimizer: OptimizerArg,
    /// Decoupled weight decay (AdamW) or L2 (SGD) while fine-tuning.
    #[arg(long, default_value_t = TuneConfig::default().weight_decay, value_parser = number::<f32>(NON_NEGATIVE))]
    pub weight_decay: f32,
    /// Linear learning-rate warm-up, in epochs, before the cosine decay.
    #[arg(long, default_value_t = TuneConfig::default().warmup_epochs, value_parser = number::<f64>(NON_NEGATIVE))]
    pub warmup_epochs: f64,
    /// Label smoothing of the fine-tuning loss (0 = none).
    #[arg(long, default_value_t = TuneConfig::default().label_smoothing, value_parser = number::<f32>(BELOW_ONE))]
    pub label_smoothing: f32,
    #[arg(long, value_parser = number::<f64>(NON_NEGATIVE), help = help::ema())]
    pub ema: Option<f64>,
    /// Dropout on the new head's input while fine-tuning.
    #[arg(long, default_value_t = TuneConfig::default().dropout, value_parser = number::<f32>(BELOW_ONE))]
    pub dropout: f32,
    /// BatchNorm in the trained blocks: train (batch statistics, running ones updated, as
    /// PyTorch's model.train()) or frozen (ImageNet's running statistics). Frozen blocks
    /// always use running statistics.
    #[arg(long, value_enum, default_value_t = BatchNormArg::Frozen)]
    pub batchnorm: BatchNormArg,
    #[arg(long, value_parser = count(1, 100_000), help = help::patience())]
    pub patience: Option<usize>,
}

/// The help of the flags whose default depends on the strategy, written from
/// [`Recipe::for_strategy`] and [`retrain::finetune::default_unfreeze`], so it cannot drift.
mod help {
    use retrain::{Recipe, Strategy};

    fn recipes() -> [Recipe; 3] {
        [Strategy::Linear, Strategy::Finetune, Strategy::Scratch].map(Recipe::for_strategy)
    }

    pub fn lr() -> String {
        let [linear, tune, _] = recipes();
        format!(
            "Learning rate: of the linear head's full-batch Adam (default {}); with finetune/full, the new head's peak rate (default {})",
            linear.head.learning_rate, tune.tune.lr
        )
    }

    pub fn l2() -> String {
        let [linear, ..] = recipes();
        format!(
            "L2 penalty on the linear head's weights (default {}; for photos with several labels, chosen among {:?} by cross-validation on the training split)",
            linear.head.l2,
            retrain::multilabel::L2_GRID
        )
    }

    pub fn unfreeze() -> String {
        let n = |name: &str| {
            retrain::find_backbone(name)
                .map(|b| retrain::finetune::default_unfreeze(b.family, b.blocks.len()).to_string())
                .unwrap_or_default()
        };
        format!(
            "Blocks to fine-tune, counted from the top (default: {} for MobileNetV2, {} for EfficientNet-Lite, about a fifth of the blocks for other backbones)",
            n("mobilenet_v2"),
            n("efficientnet_lite0")
        )
    }

    pub fn epochs() -> String {
        let [_, tune, scratch] = recipes();
        format!(
            "Fine-tuning epochs after the linear head (default {}; from scratch {})",
            tune.tune.epochs, scratch.tune.epochs
        )
    }

    pub fn study_epochs() -> String {
        let [_, tune, scratch] = recipes();
        format!("Epochs of finetune and scratch runs (default: {} and {})", tune.tune.epochs, scratch.tune.epochs)
    }

    pub fn backbone_lr() -> String {
        let [_, tune, scratch] = recipes();
        let rate = |r: &Recipe| match (r.tune.lr / r.tune.body_lr).round() {
            1.0 => "--lr".to_string(),
            k => format!("--lr / {k}"),
        };
        format!("Peak learning rate of the unfrozen blocks (default: {}; from scratch {})", rate(&tune), rate(&scratch))
    }

    pub fn ema() -> String {
        let [_, tune, scratch] = recipes();
        format!(
            "Evaluate and export a moving average of the fine-tuned weights, spanning about this many epochs (0 = the last weights themselves; default {}, from scratch {})",
            tune.tune.ema_epochs, scratch.tune.ema_epochs
        )
    }

    pub fn patience() -> String {
        let [_, tune, _] = recipes();
        format!(
            "Stop fine-tuning after this many epochs without a lower validation loss (default {}; from scratch: never, every epoch runs)",
            tune.tune.patience
        )
    }
}

impl TrainArgs {
    /// The recipe: the strategy's defaults, then what was given.
    pub fn recipe(&self) -> Recipe {
        let t = &self.tuning;
        let mut r = Recipe::for_strategy(t.strategy.into()).with_batch(self.batch.batch);
        if let Some(lr) = self.head.lr {
            r = r.with_lr(lr);
        }
        if let Some(epochs) = t.epochs {
            r = r.with_epochs(epochs);
        }
        r.head.balanced = self.head.class_weights == ClassWeights::Auto;
        if let Some(l2) = self.head.l2 {
            r = r.with_l2(l2);
        }
        r.unfreeze = t.unfreeze;
        r.augment = self.augment.into();
        let tune = &mut r.tune;
        tune.body_lr = t.backbone_lr.unwrap_or(tune.body_lr);
        tune.optimizer = t.optimizer.into();
        tune.weight_decay = t.weight_decay;
        tune.warmup_epochs = t.warmup_epochs;
        tune.label_smoothing = t.label_smoothing;
        tune.ema_epochs = t.ema.unwrap_or(tune.ema_epochs);
        tune.dropout = t.dropout;
        tune.batchnorm = t.batchnorm.into();
        tune.patience = t.patience.unwrap_or(tune.patience);
        tune.seed = self.split.seed;
        r
    }
}

#[derive(clap::Args)]
pub struct FeaturesArgs {
    /// Folder of class folders, as given to `train`.
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// This machine's part: shard K of N (K from 0), chosen by a hash of each file's path
    /// relative to DATA_DIR, so machines agree without talking. Default: everything.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<retrain_shard::Shard>,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// As for `train`: int8 features depend on the calibration images, which depend on the split.
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Also write the manifest (JSON) to this file.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// text: one summary line; json: the manifest on standard output.
    #[arg(long, value_parser = text_or_json(), default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(clap::Args)]
pub struct PredictArgs {
    /// MODEL.onnx then the images; with --model, only images.
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Use this backbone's ImageNet classifier instead of a trained model file.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Weights for --model (default: the cached official file).
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 1, value_parser = count(1, 100_000))]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub reject: RejectArgs,
    #[command(flatten)]
    pub pixels: PixelArgs,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// MODEL.onnx then the images (files or folders).
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// The class to explain (default: each photo's top class).
    #[arg(long)]
    pub class: Option<String>,
    /// Where the pictures go.
    #[arg(long, default_value = "explained")]
    pub out: PathBuf,
    /// text: a line per photo; json: per photo its path, class, top classes and heatmap.
    #[arg(long, value_parser = text_or_json(), default_value = "text")]
    pub format: Format,
    /// Occlusion (49 more forward passes per photo) even where the class activation map
    /// (one forward pass, exact when the head is linear on a globally pooled map) applies.
    #[arg(long)]
    pub occlusion: bool,
    /// What the layers see, for one photo: a picture per stage of the backbone (its most
    /// active channels, early to late) and the first convolution's filters.
    #[arg(long, conflicts_with_all = ["class", "occlusion"])]
    pub layers: bool,
    #[command(flatten)]
    pub reject: RejectArgs,
    #[command(flatten)]
    pub pixels: PixelArgs,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    pub model: PathBuf,
    pub data_dir: PathBuf,
    /// The page to write.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// text: a summary line; json: the page's figures.
    #[arg(long, value_parser = text_or_json(), default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(clap::Args)]
pub struct StudyArgs {
    pub data_dir: PathBuf,
    /// Backbones to compare.
    #[arg(long, value_delimiter = ',', default_value = "mobilenet_v2", value_name = "A,B,...")]
    pub models: Vec<String>,
    /// A backbone's weights file, NAME=FILE (default: the cached download). Repeatable.
    #[arg(long, value_name = "NAME=FILE")]
    pub weights: Vec<String>,
    /// Strategies: linear (seconds, on cached features), finetune and scratch (minutes per run).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "linear", value_name = "A,B,...")]
    pub strategies: Vec<StrategyArg>,
    /// Training photos per class (numbers, and `all`).
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,all", value_name = "N,...")]
    pub shots: Vec<retrain_study::Shots>,
    /// Random subsets per shots value (`all` runs once).
    #[arg(long, default_value_t = 3, value_parser = count(1, 1000))]
    pub repeats: usize,
    #[arg(long, value_parser = count(1, 100_000), help = help::study_epochs())]
    pub epochs: Option<usize>,
    /// Also the linear head on each stage of the backbone (globally pooled), early to late:
    /// which layer transfers best to these photos (`train --cut STAGE` uses one).
    #[arg(long)]
    pub layers: bool,
    /// The study file: rows are added as they finish; an unfinished one is continued.
    #[arg(long, default_value = "study.json")]
    pub out: PathBuf,
    /// Also write the learning curves as an HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// One or more model files; each is served under its file stem.
    #[arg(required_unless_present = "static_dir", value_name = "MODEL.onnx")]
    pub models: Vec<PathBuf>,
    /// Serve this folder's files (a `retrain export web` page) at / in place of retrain's page;
    /// models, when given too, are served beside it. The files are public: no --token.
    #[arg(long = "static", value_name = "DIR", conflicts_with = "token")]
    pub static_dir: Option<PathBuf>,
    /// Address to listen on. 0.0.0.0 serves anyone on the network: give it a --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub reject: RejectArgs,
    #[command(flatten)]
    pub batching: BatchingArgs,
    /// Largest request body in MB (larger: 413).
    #[arg(long, default_value_t = 20, value_parser = count(1, 4096))]
    pub max_body: usize,
    /// Requests waiting for a batch, per model, at most (more: 503 with Retry-After).
    #[arg(long, default_value_t = 256, value_parser = count(1, 1_000_000))]
    pub max_queue: usize,
    /// Seconds a request may take (longer: 408).
    #[arg(long, default_value_t = 30, value_parser = count(1, 86_400))]
    pub timeout: usize,
    /// Images in one request at most: files of a form, or a v2 tensor's first dimension (more: 413).
    #[arg(long, default_value_t = 64, value_parser = count(1, 100_000))]
    pub max_images: usize,
    /// Open connections at most; past it a new one is closed at once.
    #[arg(long, default_value_t = 4096, value_parser = count(1, 1_000_000))]
    pub max_connections: usize,
    /// Seconds for a request's headers to arrive; also how long an idle keep-alive
    /// connection is kept, and the TLS handshake's deadline.
    #[arg(long, default_value_t = 10, value_parser = count(1, 3_600))]
    pub header_timeout: usize,
    /// A file holding the bearer token every request but /healthz must carry
    /// (`Authorization: Bearer TOKEN`); or set RETRAIN_TOKEN. The page asks for it once.
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate (chain), with --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let pages from this origin (https://example.org, or *) call the API from a browser;
    /// by default no cross-origin call is allowed.
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Option<String>,
    #[command(flatten)]
    pub pixels: PixelArgs,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    pub model: PathBuf,
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub reject: RejectArgs,
    /// A folder of photos of none of the classes: how well the model's ood_score tells them
    /// from DATA_DIR's (AUROC, and the share accepted at 95% acceptance of DATA_DIR's).
    #[arg(long, value_name = "DIR")]
    pub ood: Option<PathBuf>,
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// Folder of class folders, as given to `train`.
    #[arg(required = true)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// The page to write (thumbnails, evidence, a tick box per suggestion, "Save decisions").
    #[arg(long, default_value = "audit.html")]
    pub out: PathBuf,
    /// text: the findings in a few lines; json: everything found, most suspicious first.
    #[arg(long, value_parser = text_or_json(), default_value = "text")]
    pub format: Format,
    /// Folds of the out-of-fold probabilities and of the stray scores.
    #[arg(long, default_value_t = retrain_audit::Options::default().folds, value_parser = count(2, 100))]
    pub folds: usize,
    /// Cosine of two photos' features at or above which they are near-duplicates
    /// (measured: docs/audit.md).
    #[arg(long, value_name = "COSINE", default_value_t = retrain_audit::near::DEFAULT_THRESHOLD, value_parser = number::<f32>(UNIT))]
    pub duplicate_threshold: f32,
    /// A stray's open-set score is above the third quartile of all photos' scores plus this
    /// many interquartile ranges.
    #[arg(long, value_name = "K", default_value_t = retrain_audit::Options::default().stray_fence, value_parser = number::<f32>(NON_NEGATIVE))]
    pub stray_fence: f32,
    /// Photos whose shorter side is below this many pixels are tiny (default: half the backbone's input size).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub tiny: Option<u32>,
    /// A folder of unlabelled photos: rank them by how much labelling each would teach the model.
    #[arg(long, value_name = "DIR")]
    pub unlabelled: Option<PathBuf>,
    /// Also write each photo's out-of-fold probabilities as CSV (path,split,label,<class>...):
    /// cleanlab's `pred_probs`.
    #[arg(long, value_name = "FILE")]
    pub out_of_fold: Option<PathBuf>,
    /// Also write the decisions file that accepts every suggestion, for `audit apply`.
    #[arg(long, value_name = "FILE")]
    pub suggested: Option<PathBuf>,
    /// How many unlabelled photos to suggest.
    #[arg(long, default_value_t = retrain_audit::Options::default().count, value_parser = count(1, 1_000_000), requires = "unlabelled")]
    pub count: usize,
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub pixels: PixelArgs,
    #[command(flatten)]
    pub labels: LabelArgs,
}

#[derive(Subcommand)]
pub enum AuditAction {
    /// Carry out the decisions saved from the audit page: photos move to the class chosen or to
    /// DATA_DIR.quarantine/ beside the folder; never deleted, never over a file; refused whole
    /// when the file is for another folder or a photo changed since the audit.
    Apply {
        decisions: PathBuf,
        /// The folder the decisions must be for (default: the one they name).
        #[arg(long, value_name = "DATA_DIR")]
        data: Option<PathBuf>,
        #[arg(long, value_parser = text_or_json(), default_value = "text")]
        format: Format,
    },
    /// Take back the last `audit apply` on DATA_DIR (from its undo log in DATA_DIR.quarantine/).
    Undo {
        data_dir: PathBuf,
        #[arg(long, value_parser = text_or_json(), default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
pub enum ExportTarget {
    /// A Triton model repository (DIR/NAME/1/model.onnx, config.pbtxt, labels.txt) and a KServe
    /// InferenceService YAML beside it. Run it with `tritonserver --model-repository DIR`.
    Triton {
        model: PathBuf,
        dir: PathBuf,
        #[command(flatten)]
        batching: BatchingArgs,
        /// Where KServe will find the repository (a copy of DIR).
        #[arg(long, default_value = "pvc://retrain-models")]
        storage_uri: String,
    },
    /// A static page that classifies photos and the camera in the browser, offline after the
    /// first visit (ONNX Runtime Web): DIR is served as is by any web server, GitHub Pages, or
    /// `retrain serve --static DIR`.
    Web {
        /// A model file made by `retrain train` (fp32 or int8).
        model: PathBuf,
        /// A new or empty folder, or an earlier web export to replace.
        dir: PathBuf,
        /// The page's heading and its name on a phone's home screen (default: the model's file name).
        #[arg(long)]
        title: Option<String>,
        /// A local onnxruntime-web 1.31.1 (the unpacked npm package or its .tgz) instead of
        /// downloading it once from the npm registry into the cache.
        #[arg(long, value_name = "DIR")]
        ort_web: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ModelsAction {
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

/// The backbone and its weights, for train and features.
#[derive(clap::Args)]
pub struct BackboneArgs {
    /// Backbone (see `retrain models`); `train --model auto` chooses one by cross-validation.
    #[arg(long, default_value = "mobilenet_v2")]
    pub model: String,
    /// Weights file (.pth or .safetensors, torchvision names) instead of the cached download;
    /// NAME=FILE gives another backbone's (candidates of --model auto). Repeatable.
    #[arg(long, value_name = "[NAME=]FILE")]
    pub weights: Vec<String>,
}

impl BackboneArgs {
    /// The backbone and its weights: `FILE` for --model, `NAME=FILE` for any backbone.
    pub fn spec(&self) -> anyhow::Result<retrain::BackboneSpec> {
        let w = Weights::parse(&self.weights);
        if let Some(second) = w.bare.get(1) {
            anyhow::bail!("--weights {}: a second weights file needs the backbone's name, NAME=FILE", second.display());
        }
        let mut b = retrain::BackboneSpec::new(&self.model);
        b.weights_for = w.named;
        b.weights = w.bare.into_iter().next();
        if b.name == retrain::select::AUTO && b.weights.is_some() {
            anyhow::bail!("--model auto: give each candidate's weights as NAME=FILE");
        }
        if b.weights.is_none() {
            b.weights = b.weights_for.get(&b.name).cloned();
        }
        Ok(b)
    }
}

/// `--weights` values: `NAME=FILE` where NAME is a backbone, else a bare `FILE`.
pub struct Weights {
    pub bare: Vec<PathBuf>,
    pub named: BTreeMap<String, PathBuf>,
}

impl Weights {
    pub fn parse(values: &[String]) -> Self {
        let mut w = Weights { bare: Vec::new(), named: BTreeMap::new() };
        for v in values {
            match v.split_once('=').filter(|(name, _)| retrain::find_backbone(name).is_ok()) {
                Some((name, file)) => {
                    w.named.insert(name.to_string(), PathBuf::from(file));
                }
                None => w.bare.push(PathBuf::from(v)),
            }
        }
        w
    }
}

/// How the labelled photos are split into training and validation.
#[derive(clap::Args)]
pub struct SplitArgs {
    /// Validation folder (class sub-folders); default: DATA_DIR/val if DATA_DIR/train exists.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Fraction of each class held out for validation when there is no val folder.
    #[arg(long, default_value_t = 0.2, value_parser = number::<f64>(FRACTION))]
    pub val_fraction: f64,
    /// Seed of the validation split and of fine-tuning's shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Where features are cached.
#[derive(clap::Args)]
pub struct CacheArgs {
    /// Feature cache folder; many processes and machines may share one (a network filesystem,
    /// a mounted bucket). Default: $XDG_CACHE_HOME/retrain/features (else ~/.cache/...).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Recompute features instead of using the on-disk cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
}

impl CacheArgs {
    pub fn root(&self) -> Option<PathBuf> {
        match (&self.cache, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => Some(retrain::spec::default_feature_cache()),
        }
    }
}

/// Images per batch, for train and features.
#[derive(clap::Args)]
pub struct BatchArgs {
    /// Images per batch (ONNX Runtime batches, and fine-tuning's optimiser steps).
    #[arg(long, default_value_t = Recipe::for_strategy(Strategy::Linear).batch, value_parser = count(1, 65536))]
    pub batch: usize,
}

/// The backbone's arithmetic, for train and features.
#[derive(clap::Args)]
pub struct PrecisionArgs {
    /// Arithmetic of the backbone in the model: int8 is quantised after calibration on 64 of
    /// the training images (faster, usually within a point of fp32; see docs/train.md); bf16 is
    /// refused with the reason. With finetune/full, training runs in fp32 and the exported
    /// model is quantised.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
}

/// Dynamic batching, of serve and of the Triton export.
#[derive(clap::Args)]
pub struct BatchingArgs {
    /// Most images in one batch (Triton's max_batch_size).
    #[arg(long, default_value_t = 32, value_parser = count(1, 4096))]
    pub max_batch: usize,
    /// How long a batch's first request waits for others, in milliseconds (Triton's dynamic
    /// batching delay).
    #[arg(long, default_value_t = 2, value_parser = count(0, 10_000))]
    pub batch_wait_ms: usize,
}

/// Photos of none of the model's classes, told apart by its `ood_score`.
#[derive(clap::Args)]
pub struct RejectArgs {
    /// auto: answer "unknown" for photos whose ood_score is above the threshold stored in the
    /// model (chosen on its training photos to accept 95% of them); off: always name a class;
    /// a number from 0 to 2: that threshold instead (higher accepts more).
    #[arg(long, value_name = "auto|off|VALUE", default_value = "auto")]
    pub reject: retrain::model::Reject,
}

/// How big an image train, eval and predict decode.
#[derive(clap::Args)]
pub struct PixelArgs {
    /// Refuse images whose header claims more pixels than this (Pillow's limit by default):
    /// they are reported, never decoded.
    #[arg(long, default_value_t = retrain::DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Refuse image files larger than this many MB, from their size alone (a video beside
    /// the photos is reported, never read).
    #[arg(long, value_name = "MB", default_value_t = retrain::DEFAULT_MAX_FILE_SIZE >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_file_size: u64,
}

impl PixelArgs {
    pub fn limits(&self) -> retrain::Limits {
        retrain::Limits { max_pixels: self.max_pixels, max_file_size: self.max_file_size << 20 }
    }
}

/// How train and eval read a folder of labelled photos.
#[derive(clap::Args)]
pub struct InputArgs {
    #[command(flatten)]
    pub pixels: PixelArgs,
    /// Keep photos whose content appears under two classes (label conflicts) or in both
    /// training and validation (leaks); by default they are left out, and always reported.
    #[arg(long)]
    pub keep_duplicates: bool,
    #[command(flatten)]
    pub labels: LabelArgs,
}

/// A label file instead of class folders.
#[derive(clap::Args)]
pub struct LabelArgs {
    /// Read the labels from FILE instead of class folders: CSV with a header row (a `path`,
    /// `image` or `filename` column and a `label` column; or one 0/1 column per class; an
    /// optional `split` column of train/val) or JSON lines ({"path": ..., "labels": [...],
    /// "split": ...}). Paths are relative to FILE; files of DATA_DIR it does not list are left
    /// out, and said.
    #[arg(long, value_name = "FILE", conflicts_with = "val")]
    pub labels: Option<PathBuf>,
    /// What separates several labels in one CSV cell.
    #[arg(long, value_name = "CHAR", default_value_t = '|', requires = "labels")]
    pub label_delimiter: char,
    /// Leave out photos the label file lists that are not there (each is reported) instead of
    /// refusing the file.
    #[arg(long, requires = "labels")]
    pub skip_missing: bool,
}

impl LabelArgs {
    pub fn source(&self) -> Option<retrain::dataset::LabelSource> {
        self.labels.as_ref().map(|file| retrain::dataset::LabelSource {
            file: file.clone(),
            delimiter: self.label_delimiter,
            skip_missing: self.skip_missing,
        })
    }
}

impl InputArgs {
    /// The data spec of DATA_DIR split as `split` says.
    pub fn data(&self, dir: &std::path::Path, split: &SplitArgs) -> retrain::DataSpec {
        let limits = self.pixels.limits();
        retrain::DataSpec {
            val_dir: split.val.clone(),
            val_fraction: split.val_fraction,
            seed: split.seed,
            max_pixels: limits.max_pixels,
            max_file_size: limits.max_file_size,
            keep_duplicates: self.keep_duplicates,
            labels: self.labels.source(),
            ..retrain::DataSpec::new(dir)
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum ClassWeights {
    Auto,
    None,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum StrategyArg {
    Linear,
    Finetune,
    Full,
    Scratch,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::Linear => Strategy::Linear,
            StrategyArg::Finetune => Strategy::Finetune,
            StrategyArg::Full => Strategy::Full,
            StrategyArg::Scratch => Strategy::Scratch,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum TaskArg {
    Auto,
    SingleLabel,
    MultiLabel,
}

impl From<TaskArg> for retrain::spec::Task {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Auto => Self::Auto,
            TaskArg::SingleLabel => Self::SingleLabel,
            TaskArg::MultiLabel => Self::MultiLabel,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum BatchNormArg {
    Train,
    Frozen,
}

impl From<BatchNormArg> for retrain::BatchNormMode {
    fn from(b: BatchNormArg) -> Self {
        match b {
            BatchNormArg::Train => retrain::BatchNormMode::Train,
            BatchNormArg::Frozen => retrain::BatchNormMode::Frozen,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum OptimizerArg {
    Adamw,
    Sgd,
}

impl From<OptimizerArg> for retrain::TuneOptimizer {
    fn from(o: OptimizerArg) -> Self {
        match o {
            OptimizerArg::Adamw => retrain::TuneOptimizer::AdamW,
            OptimizerArg::Sgd => retrain::TuneOptimizer::Sgd,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum AugmentArg {
    None,
    Light,
    Standard,
}

impl From<AugmentArg> for retrain::Augment {
    fn from(a: AugmentArg) -> Self {
        match a {
            AugmentArg::None => retrain::Augment::None,
            AugmentArg::Light => retrain::Augment::Light,
            AugmentArg::Standard => retrain::Augment::Standard,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum PrecisionArg {
    Fp32,
    Bf16,
    Int8,
}

impl From<PrecisionArg> for retrain::precision::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fp32 => retrain::precision::Precision::Fp32,
            PrecisionArg::Bf16 => retrain::precision::Precision::Bf16,
            PrecisionArg::Int8 => retrain::precision::Precision::Int8,
        }
    }
}

/// `--format`: every command prints text or JSON; predict, eval and models also CSV.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// `--format` of the commands that print no CSV.
fn text_or_json() -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(["text", "json"]).map(|s| if s == "json" { Format::Json } else { Format::Text })
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
const UNIT: Range = Range { lo: 0.0, lo_open: true, hi: 1.0, hi_open: false };
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
