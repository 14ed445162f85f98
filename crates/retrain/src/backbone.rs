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
        let me = Self { info, state, weights_path: path, weights_sha256, int8: None };
        // Building once checks every tensor's name and shape before any long work starts.
        me.graph(&GraphOutputs { features: true, ..Default::default() }, &[])?;
        Ok(me)
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
        retrain_zoo::build(self.info, &self.state, outputs, metadata)
            .map_err(|source| Error::Zoo { path: self.weights_path.clone(), source })
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
        if let Some(c) = &cached {
            c.put(&ranges)?;
        }
        self.int8 = Some(ranges);
        Ok(())
    }

    /// The feature cache of this backbone (its weights, preprocessing and precision) under `root`.
    pub fn feature_cache(&self, root: &Path) -> FeatureCache {
        FeatureCache::new(root, &self.cache_key(), self.info.feature_dim)
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
