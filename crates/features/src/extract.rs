use crate::{content_hash, FeatureCache, FeatureError, Session};
use rayon::prelude::*;
use retrain_pixels::{Geometry, PixelError};
use std::path::PathBuf;

/// What extraction gives: for each input file, in input order, its features or why it could
/// not be read; and how many were computed rather than read from the cache.
pub struct Extracted {
    pub features: Vec<Result<Vec<f32>, PixelError>>,
    pub computed: usize,
}

/// A session created on first use: when every feature is cached, ONNX Runtime never starts.
pub struct LazySession<'a> {
    make: Box<dyn FnMut() -> Result<Session, FeatureError> + 'a>,
    session: Option<Session>,
}

impl<'a> LazySession<'a> {
    pub fn new(make: impl FnMut() -> Result<Session, FeatureError> + 'a) -> Self {
        Self { make: Box::new(make), session: None }
    }

    pub fn ready(session: Session) -> Self {
        Self { make: Box::new(|| unreachable!("session already made")), session: Some(session) }
    }

    pub fn get(&mut self) -> Result<&mut Session, FeatureError> {
        if self.session.is_none() {
            self.session = Some((self.make)()?);
        }
        Ok(self.session.as_mut().expect("just made"))
    }

    pub fn into_inner(self) -> Option<Session> {
        self.session
    }
}

enum Item {
    Cached(Vec<f32>),
    Pixels(String, Vec<u8>),
    Failed(PixelError),
}

/// Computes the backbone's features for every file: cached ones are read back, the rest are
/// decoded in parallel (rayon) while ONNX Runtime runs the previous batch, then cached.
/// A file that cannot be decoded gets its error in its slot; it never stops the run.
pub fn extract(
    session: &mut LazySession,
    output: &str,
    files: &[PathBuf],
    geometry: Geometry,
    cache: Option<&FeatureCache>,
    batch: usize,
    progress: &indicatif::ProgressBar,
) -> Result<Extracted, FeatureError> {
    let size = geometry.crop as usize;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Item>>(1);
    let mut results = Vec::with_capacity(files.len());
    let mut computed_total = 0;
    std::thread::scope(|s| -> Result<(), FeatureError> {
        s.spawn(move || {
            for chunk in files.chunks(batch.max(1)) {
                let items: Vec<Item> = chunk.par_iter().map(|p| prepare(p, geometry, cache)).collect();
                if tx.send(items).is_err() {
                    break;
                }
            }
        });
        for items in rx {
            let pending: Vec<usize> = (0..items.len()).filter(|&i| matches!(items[i], Item::Pixels(..))).collect();
            let mut computed: Vec<Vec<f32>> = Vec::new();
            if !pending.is_empty() {
                let mut pixels = Vec::with_capacity(pending.len() * size * size * 3);
                for &i in &pending {
                    if let Item::Pixels(_, px) = &items[i] {
                        pixels.extend_from_slice(px);
                    }
                }
                let outs = session.get()?.run(pixels, pending.len(), size)?;
                computed_total += pending.len();
                let (_, shape, data) = outs.into_iter().find(|(n, _, _)| n == output).ok_or_else(|| {
                    FeatureError::Ort { what: "backbone".into(), reason: format!("no output `{output}`") }
                })?;
                let dim: usize = shape[1..].iter().product();
                computed = data.chunks_exact(dim).map(<[f32]>::to_vec).collect();
            }
            let mut computed = computed.into_iter();
            for item in items {
                results.push(match item {
                    Item::Cached(f) => Ok(f),
                    Item::Failed(e) => Err(e),
                    Item::Pixels(hash, _) => {
                        let f = computed.next().expect("one feature row per pending image");
                        if let Some(c) = cache {
                            c.put(&hash, &f)?;
                        }
                        Ok(f)
                    }
                });
                progress.inc(1);
            }
        }
        Ok(())
    })?;
    Ok(Extracted { features: results, computed: computed_total })
}

fn prepare(path: &std::path::Path, g: Geometry, cache: Option<&FeatureCache>) -> Item {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(source) => return Item::Failed(PixelError::Io { path: path.to_path_buf(), source }),
    };
    let hash = content_hash(&bytes);
    if let Some(f) = cache.and_then(|c| c.get(&hash)) {
        return Item::Cached(f);
    }
    match retrain_pixels::decode_for(&bytes, path, g) {
        Ok(img) => Item::Pixels(hash, retrain_pixels::prepare(&img, g)),
        Err(e) => Item::Failed(e),
    }
}
