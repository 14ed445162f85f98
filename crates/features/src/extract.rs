use crate::{content_hash, FeatureCache, FeatureError, Session};
use rayon::prelude::*;
use retrain_pixels::{Geometry, Limits, PixelError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What extraction gives: for each input file, in input order, its features or why it could
/// not be read; and how many were computed rather than read from the cache.
pub struct Extracted {
    pub features: Vec<Result<Vec<f32>, PixelError>>,
    pub computed: usize,
}

/// Beyond this many streams each one's batches and arena cost memory for little gain.
const MAX_STREAMS: usize = 4;

type MakeSession<'a> = dyn Fn(usize) -> Result<Session, FeatureError> + Send + Sync + 'a;

/// The ONNX Runtime sessions of one model, made on first use (when every feature is cached,
/// ONNX Runtime never starts). One batch runs on a session using every thread. Many batches
/// run on several sessions of fewer threads each, every one decoding its own next batch and
/// then running it: ONNX Runtime's threads meet at a barrier after every operator, so when
/// decoding takes a core from a session of two threads both wait, while two single-threaded
/// sessions never wait on each other (docs/benchmarks.md has the figures).
pub struct Sessions<'a> {
    make: Box<MakeSession<'a>>,
    threads: usize,
    whole: Option<Session>,
    streams: Vec<Option<Session>>,
}

impl<'a> Sessions<'a> {
    /// `make(n)` creates a session with `n` intra-op threads; `threads` is what they share.
    pub fn new(threads: usize, make: impl Fn(usize) -> Result<Session, FeatureError> + Send + Sync + 'a) -> Self {
        let threads = threads.max(1);
        let streams = threads.min(MAX_STREAMS);
        Self { make: Box::new(make), threads, whole: None, streams: (0..streams).map(|_| None).collect() }
    }

    /// Adopts a session already made with every thread.
    pub fn with_whole(mut self, session: Session) -> Self {
        self.whole = Some(session);
        self
    }

    pub fn into_whole(self) -> Option<Session> {
        self.whole
    }
}

enum Item {
    Cached(Vec<f32>),
    Pixels(String, Vec<u8>),
    Failed(PixelError),
}

enum Done {
    Cached(Vec<f32>),
    Computed(String, Vec<f32>),
    Failed(PixelError),
}

/// Computes the backbone's features for every file: cached ones are read back, the rest are
/// decoded and run through ONNX Runtime `batch` at a time (split between the sessions'
/// streams when there is more than one batch), then cached. A file that cannot be decoded
/// gets its error in its slot; it never stops the run. Each row holds the named `outputs`'
/// values for its image, one output after another.
pub fn extract(
    sessions: &mut Sessions,
    outputs: &[&str],
    files: &[PathBuf],
    geometry: Geometry,
    limits: Limits,
    cache: Option<&FeatureCache>,
    batch: usize,
    progress: &indicatif::ProgressBar,
) -> Result<Extracted, FeatureError> {
    let batch = batch.max(1);
    let mut out = Extracted { features: Vec::with_capacity(files.len()), computed: 0 };
    let mut deliver = |done: Vec<Done>| -> Result<(), FeatureError> {
        for d in done {
            out.features.push(match d {
                Done::Cached(f) => Ok(f),
                Done::Failed(e) => Err(e),
                Done::Computed(hash, f) => {
                    out.computed += 1;
                    if let Some(c) = cache {
                        c.put_or_warn(&hash, &f);
                    }
                    Ok(f)
                }
            });
            progress.inc(1);
        }
        Ok(())
    };
    let job = Job { outputs, files, geometry, limits, cache, batch };
    if sessions.streams.len() < 2 || files.len() <= batch {
        whole(sessions, job, &mut deliver)?;
    } else {
        streamed(sessions, job, &mut deliver)?;
    }
    Ok(out)
}

/// What one extraction computes, shared by both ways of running it.
#[derive(Clone, Copy)]
struct Job<'a> {
    outputs: &'a [&'a str],
    files: &'a [PathBuf],
    geometry: Geometry,
    limits: Limits,
    cache: Option<&'a FeatureCache>,
    batch: usize,
}

/// One session with every thread; the next batch is decoded in parallel (rayon) while it runs.
fn whole(
    sessions: &mut Sessions,
    job: Job,
    deliver: &mut dyn FnMut(Vec<Done>) -> Result<(), FeatureError>,
) -> Result<(), FeatureError> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Item>>(1);
    std::thread::scope(|s| -> Result<(), FeatureError> {
        s.spawn(move || {
            for chunk in job.files.chunks(job.batch) {
                let items: Vec<Item> = chunk.par_iter().map(|p| prepare(p, job)).collect();
                if tx.send(items).is_err() {
                    break;
                }
            }
        });
        for items in rx {
            deliver(compute(items, &mut sessions.whole, &*sessions.make, sessions.threads, job)?)?;
        }
        Ok(())
    })
}

/// Several sessions, each decoding and running its own batches; results are delivered in
/// file order. The batch is split between the streams, so memory stays that of one `batch`,
/// and the last round is balanced so that no stream runs alone at the end.
fn streamed(
    sessions: &mut Sessions,
    job: Job,
    deliver: &mut dyn FnMut(Vec<Done>) -> Result<(), FeatureError>,
) -> Result<(), FeatureError> {
    let Sessions { make, threads, streams, .. } = sessions;
    let n = streams.len();
    let files = job.files;
    let chunks = files.len().div_ceil(job.batch.div_ceil(n)).next_multiple_of(n);
    let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(chunks)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<Vec<Done>, FeatureError>)>();
    std::thread::scope(|s| -> Result<(), FeatureError> {
        for (k, slot) in streams.iter_mut().enumerate() {
            // Every thread is used: 6 threads on 4 sessions are 2 + 2 + 1 + 1.
            let intra = *threads / n + usize::from(k < *threads % n);
            let (tx, make, chunks, next, stop) = (tx.clone(), &*make, &chunks, &next, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= chunks.len() || stop.load(Ordering::Relaxed) {
                    break;
                }
                let items: Vec<Item> = if intra > 1 {
                    chunks[i].par_iter().map(|p| prepare(p, job)).collect()
                } else {
                    chunks[i].iter().map(|p| prepare(p, job)).collect()
                };
                if tx.send((i, compute(items, slot, make, intra, job))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut due = 0;
        for (i, done) in rx {
            waiting.insert(i, done);
            while let Some(done) = waiting.remove(&due) {
                let delivered = done.and_then(&mut *deliver);
                if delivered.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                delivered?;
                due += 1;
            }
        }
        Ok(())
    })
}

/// Runs the decoded images among `items` in one batch through the session in `slot` (made
/// with `threads` threads when first needed) and pairs each with its row.
fn compute(
    items: Vec<Item>,
    slot: &mut Option<Session>,
    make: &MakeSession,
    threads: usize,
    job: Job,
) -> Result<Vec<Done>, FeatureError> {
    let size = job.geometry.crop as usize;
    let n = items.iter().filter(|i| matches!(i, Item::Pixels(..))).count();
    let rows = if n == 0 {
        Vec::new()
    } else {
        let mut pixels = Vec::with_capacity(n * size * size * 3);
        for item in &items {
            if let Item::Pixels(_, px) = item {
                pixels.extend_from_slice(px);
            }
        }
        let session = match slot {
            Some(s) => s,
            None => slot.insert(make(threads)?),
        };
        let mut all = session.run(pixels, n, size)?;
        let mut rows = vec![Vec::new(); n];
        for &output in job.outputs {
            let at = all.iter().position(|(name, _, _)| name == output).ok_or_else(|| FeatureError::Ort {
                what: "backbone".into(),
                reason: format!("no output `{output}`"),
            })?;
            let (_, shape, data) = all.swap_remove(at);
            let dim: usize = shape[1..].iter().product();
            if dim == 0 || data.len() != n * dim {
                return Err(FeatureError::Ort {
                    what: "backbone".into(),
                    reason: format!("output `{output}` has shape {shape:?} for {n} images"),
                });
            }
            for (row, part) in rows.iter_mut().zip(data.chunks_exact(dim)) {
                row.extend_from_slice(part);
            }
        }
        rows
    };
    let mut rows = rows.into_iter();
    Ok(items
        .into_iter()
        .map(|item| match item {
            Item::Cached(f) => Done::Cached(f),
            Item::Failed(e) => Done::Failed(e),
            Item::Pixels(hash, _) => Done::Computed(hash, rows.next().expect("one feature row per decoded image")),
        })
        .collect())
}

fn prepare(path: &std::path::Path, job: Job) -> Item {
    let (g, cache) = (job.geometry, job.cache);
    let bytes = match retrain_pixels::read_file(path, job.limits) {
        Ok(b) => b,
        Err(e) => return Item::Failed(e),
    };
    // Without a cache the hash has no use.
    let hash = cache.map(|_| content_hash(&bytes)).unwrap_or_default();
    if let Some(f) = cache.and_then(|c| c.get(&hash)) {
        return Item::Cached(f);
    }
    match retrain_pixels::decode_for(&bytes, path, g, job.limits) {
        Ok(img) => Item::Pixels(hash, retrain_pixels::prepare(&img, g)),
        Err(e) => Item::Failed(e),
    }
}
