//! A backbone with its weights in hand: resolved from `--weights` or the cache (downloading
//! when needed), checked, and built into ONNX graphs.

use crate::{Error, Result};
use retrain_features::{FeatureCache, FeatureError, Session, Sessions};
use retrain_pixels::Geometry;
use retrain_weights::StateDict;
use retrain_zoo::{Backbone, GraphOutputs, LinearHead};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub struct LoadedBackbone {
    pub info: &'static Backbone,
    pub state: StateDict,
    pub weights_path: PathBuf,
    pub weights_sha256: String,
    /// Calibrated ranges when the backbone runs in int8 (`--precision int8`).
    pub int8: Option<retrain_onnx::quantize::Ranges>,
    /// Set when the backbone ends early, at a stage (`--cut`).
    pub cut: Option<Cut>,
}

/// Where the backbone was cut: after stage `stage` (1-based, early to late), its map pooled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub stage: usize,
    pub value: String,
    pub channels: usize,
    pub size: usize,
}

/// Bumped whenever the feature graph changes numerically, to retire cached features.
const FEATURE_VERSION: &str = "features-v1";

impl LoadedBackbone {
    /// Loads `name`'s weights from `weights` if given, else from the cache, downloading them
    /// from the official source on first use.
    pub fn load(name: &str, weights: Option<&Path>, quiet: bool) -> Result<Self> {
        let info = crate::find_backbone(name)?;
        if let Some(imp) = &info.imported {
            // An imported model carries its weights inside its ONNX file.
            let me = Self {
                info,
                state: StateDict::new(),
                weights_path: imp.onnx.clone(),
                weights_sha256: info.weights.sha256.into(),
                int8: None,
                cut: None,
            };
            me.graph(&GraphOutputs { features: true, ..Default::default() }, &[])?;
            return Ok(me);
        }
        let path = match weights {
            Some(p) => p.to_path_buf(),
            None => retrain_weights::fetch(&info.weights, quiet)?,
        };
        let weights_sha256 = retrain_weights::sha256_file(&path)?;
        let state = retrain_weights::load_state_dict(&path)?;
        let me = Self { info, state, weights_path: path, weights_sha256, int8: None, cut: None };
        // Building once checks every tensor's name and shape before any long work starts.
        me.graph(&GraphOutputs { features: true, ..Default::default() }, &[])?;
        Ok(me)
    }

    /// `name`'s architecture from random initialisation ([`retrain_weights::kaiming`]),
    /// seeded: the start of training from scratch.
    pub fn random(name: &str, seed: u64) -> Result<Self> {
        let info = crate::find_backbone(name)?;
        let shapes = retrain_zoo::parameter_shapes(info);
        if shapes.is_empty() {
            return Err(Error::Finetune {
                model: name.into(),
                reason: "an imported model cannot be trained from scratch (retrain does not know its layers)".into(),
            });
        }
        let state = retrain_weights::initialised(&shapes, seed);
        Ok(Self {
            info,
            state,
            weights_path: PathBuf::from(format!("(random initialisation, seed {seed})")),
            weights_sha256: format!("random-init-seed-{seed}"),
            int8: None,
            cut: None,
        })
    }

    pub fn geometry(&self) -> Geometry {
        geometry(self.info)
    }

    /// Names this backbone, its weights and preprocessing: the feature cache's key.
    pub fn cache_key(&self) -> String {
        let p = self.info.preprocess;
        let mut desc = format!("{FEATURE_VERSION}|{}|{}|{:?}", self.info.name, self.weights_sha256, p);
        if let Some(r) = &self.int8 {
            desc += &format!("|int8 {}", crate::precision::ranges_digest(r));
        }
        if let Some(c) = &self.cut {
            desc += &format!("|cut {}", c.value);
        }
        format!("{}-{}", self.info.name, &blake3::hash(desc.as_bytes()).to_hex()[..16])
    }

    /// The backbone as an ONNX model with the given outputs and metadata (quantised when
    /// the backbone has been calibrated for int8).
    pub fn graph(&self, outputs: &GraphOutputs, metadata: &[(String, String)]) -> Result<retrain_onnx::ModelProto> {
        let m = self.float_graph(outputs, metadata)?;
        Ok(match &self.int8 {
            Some(r) => crate::precision::quantized(&m, r),
            None => m,
        })
    }

    fn float_graph(&self, outputs: &GraphOutputs, metadata: &[(String, String)]) -> Result<retrain_onnx::ModelProto> {
        let mut m = retrain_zoo::build(self.info, &self.state, outputs, metadata)
            .map_err(|source| Error::Zoo { path: self.weights_path.clone(), source })?;
        if let Some(c) = &self.cut {
            crate::stages::cut(&mut m, &c.value, c.channels)?;
        }
        Ok(m)
    }

    /// Features per image: the backbone's, or the cut stage's channels.
    pub fn feature_dim(&self) -> usize {
        self.cut.as_ref().map_or(self.info.feature_dim, |c| c.channels)
    }

    /// The uncut backbone's stages, early to late (found by running one grey image).
    pub fn stages(&self, threads: usize) -> Result<Vec<crate::stages::StageMap>> {
        let m = retrain_zoo::build(self.info, &self.state, &GraphOutputs { features: true, ..Default::default() }, &[])
            .map_err(|source| Error::Zoo { path: self.weights_path.clone(), source })?;
        let crop = self.info.preprocess.crop as usize;
        crate::stages::find(&m, &vec![128u8; crop * crop * 3], crop, self.info.name, threads)
    }

    /// From now on the backbone ends at stage `stage` (1-based), its map globally pooled.
    pub fn cut_at(&mut self, stage: usize, threads: usize) -> Result<()> {
        let stages = self.stages(threads)?;
        let list = || {
            stages
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{} ({}×{}×{})", i + 1, s.channels, s.size[0], s.size[1]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let s = stage.checked_sub(1).and_then(|i| stages.get(i)).ok_or_else(|| Error::Data {
            path: self.weights_path.clone(),
            reason: format!("--cut {stage}: {} has stages {}", self.info.name, list()),
        })?;
        self.cut = Some(Cut { stage, value: s.value.clone(), channels: s.channels, size: s.size[0] });
        Ok(())
    }

    /// From now on the backbone runs in int8, with ranges measured on `files`, or read from
    /// `cache` (a feature cache root) when these files were measured before.
    pub fn calibrate_int8(&mut self, files: &[PathBuf], threads: usize, cache: Option<&Path>) -> Result<()> {
        let m = self.float_graph(&GraphOutputs { features: true, ..Default::default() }, &[])?;
        let cached = cache.map(|root| crate::precision::RangeCache::new(root, &self.cache_key(), files));
        if let Some(r) = cached.as_ref().and_then(|c| c.get()) {
            self.int8 = Some(r);
            return Ok(());
        }
        let ranges = crate::precision::calibrate(&m, &[], files, self.geometry(), threads)?;
        if let Some(Err(e)) = cached.as_ref().map(|c| c.put(&ranges)) {
            eprintln!("warning: {e}: the calibration is not kept in the cache");
        }
        self.int8 = Some(ranges);
        Ok(())
    }

    /// The feature cache of this backbone (its weights, preprocessing and precision) under
    /// `root`, rid of the temporary entries killed runs left in it.
    pub fn feature_cache(&self, root: &Path) -> FeatureCache {
        let c = FeatureCache::new(root, &self.cache_key(), self.feature_dim());
        c.sweep_partials();
        c
    }

    /// ONNX Runtime sessions of the feature extractor, for `retrain_features::extract`; the
    /// graph is built once, on first use, for however many sessions extraction makes.
    pub fn feature_sessions(&self, threads: usize) -> Sessions<'_> {
        let model = Mutex::new(None::<Arc<Vec<u8>>>);
        Sessions::new(threads, move |threads| {
            let bytes = {
                let mut m = model.lock().unwrap_or_else(PoisonError::into_inner);
                match &*m {
                    Some(b) => b.clone(),
                    None => {
                        let b =
                            Arc::new(self.feature_model().map_err(|e| FeatureError::Ort {
                                what: self.info.name.into(),
                                reason: e.to_string(),
                            })?);
                        m.insert(b).clone()
                    }
                }
            };
            Session::new(&bytes, self.info.name, threads)
        })
    }

    /// Serialised feature extractor (`features` output only).
    pub fn feature_model(&self) -> Result<Vec<u8>> {
        Ok(retrain_onnx::encode(&self.graph(&GraphOutputs { features: true, ..Default::default() }, &[])?))
    }

    /// Serialised ImageNet classifier (`imagenet_logits` output).
    pub fn imagenet_model(&self) -> Result<Vec<u8>> {
        Ok(retrain_onnx::encode(&self.graph(&GraphOutputs { imagenet_logits: true, ..Default::default() }, &[])?))
    }

    /// The full classifier: backbone + trained head + softmax.
    pub fn classifier(&self, head: LinearHead, metadata: &[(String, String)]) -> Result<retrain_onnx::ModelProto> {
        self.graph(&GraphOutputs { features: true, head: Some(head), ..Default::default() }, metadata)
    }
}

pub fn geometry(info: &Backbone) -> Geometry {
    Geometry { resize: info.preprocess.resize, crop: info.preprocess.crop, filter: info.preprocess.interpolation }
}
