//! Dynamic batching, as Triton does it: requests that arrive within `wait` of each other are
//! run as one ONNX Runtime batch (up to `max_batch` images) on the model's own thread.

use crate::metrics::Metrics;
use retrain_features::Session;
use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Every output of the model for one image, by output name (`probabilities`, `logits`,
/// `features`).
pub type Row = HashMap<String, Vec<f32>>;

struct Job {
    /// `n` prepared crops, crop×crop×3 bytes each.
    pixels: Vec<u8>,
    n: usize,
    reply: oneshot::Sender<Result<Vec<Row>, String>>,
}

/// Why a job was not run.
#[derive(Debug)]
pub enum Refused {
    /// The queue holds `max_queue` requests already.
    Full,
    /// The model's thread has stopped (the server is shutting down).
    Stopped,
    /// ONNX Runtime failed on the batch.
    Failed(String),
}

/// How requests are gathered into batches.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// ONNX Runtime's threads for the model.
    pub threads: usize,
    pub max_batch: usize,
    /// How long the first request of a batch waits for more.
    pub wait: Duration,
    /// Requests waiting at most; more are refused.
    pub max_queue: usize,
}

pub struct Batcher {
    name: String,
    max_batch: usize,
    metrics: Arc<Metrics>,
    tx: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl Batcher {
    /// Starts the model's thread, which opens its ONNX Runtime session (an error opening it is
    /// returned here).
    pub fn start(
        model: Vec<u8>,
        name: String,
        crop: usize,
        b: Batching,
        metrics: Arc<Metrics>,
    ) -> Result<Self, retrain_features::FeatureError> {
        let (tx, rx) = sync_channel::<Job>(b.max_queue);
        let (thread_name, thread_metrics) = (name.clone(), metrics.clone());
        let (ready_tx, ready_rx) = sync_channel(1);
        let worker = std::thread::Builder::new()
            .name(format!("model {name}"))
            .spawn(move || match Session::new(&model, &thread_name, b.threads) {
                Ok(session) => {
                    drop(model);
                    let _ = ready_tx.send(Ok(()));
                    run(session, rx, crop, b, &thread_name, &thread_metrics);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .expect("spawning a thread");
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { name, max_batch: b.max_batch.max(1), metrics, tx: Some(tx), worker: Some(worker) }),
            Ok(Err(e)) => Err(e),
            Err(_) => panic!("the model thread ended before opening its session"),
        }
    }

    /// Queues `n` prepared crops; their rows come back in order once their batches have run.
    /// More than `max_batch` crops are queued as several jobs of at most `max_batch`, so no
    /// ONNX Runtime batch is ever larger (its memory grows with the batch).
    pub async fn submit(&self, pixels: Vec<u8>, n: usize) -> Result<Vec<Row>, Refused> {
        if n <= self.max_batch || n == 0 {
            return self.submit_one(pixels, n).await;
        }
        let per = pixels.len() / n;
        let mut rows = Vec::with_capacity(n);
        for chunk in pixels.chunks(per * self.max_batch) {
            rows.extend(self.submit_one(chunk.to_vec(), chunk.len() / per).await?);
        }
        Ok(rows)
    }

    async fn submit_one(&self, pixels: Vec<u8>, n: usize) -> Result<Vec<Row>, Refused> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(Refused::Stopped)?;
        self.metrics.queued(&self.name, 1);
        if let Err(e) = tx.try_send(Job { pixels, n, reply }) {
            self.metrics.queued(&self.name, -1);
            return Err(match e {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Disconnected(_) => Refused::Stopped,
            });
        }
        match answer.await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(Refused::Failed(e)),
            Err(_) => Err(Refused::Stopped),
        }
    }
}

impl Drop for Batcher {
    /// Closes the queue and waits for the jobs already in it to be answered.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn run(mut session: Session, rx: Receiver<Job>, crop: usize, b: Batching, name: &str, metrics: &Metrics) {
    // A job that would have made the batch larger than `max_batch` starts the next one.
    let mut held: Option<Job> = None;
    while let Some(first) = held.take().or_else(|| rx.recv().ok()) {
        let mut n = first.n;
        let mut jobs = vec![first];
        let deadline = Instant::now() + b.wait;
        while n < b.max_batch {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(j) if n + j.n > b.max_batch => {
                    held = Some(j);
                    break;
                }
                Ok(j) => {
                    n += j.n;
                    jobs.push(j);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.queued(name, -(jobs.len() as i64));
        let mut pixels = Vec::with_capacity(n * crop * crop * 3);
        for j in &jobs {
            pixels.extend_from_slice(&j.pixels);
        }
        let started = Instant::now();
        match session.run(pixels, n, crop) {
            Ok(outputs) => {
                metrics.batch(name, n, started.elapsed());
                let mut start = 0;
                for j in jobs {
                    let rows = (start..start + j.n)
                        .map(|i| {
                            outputs
                                .iter()
                                .map(|(out, shape, data)| {
                                    let w = shape.get(1..).map_or(1, |s| s.iter().product());
                                    (out.clone(), data[i * w..(i + 1) * w].to_vec())
                                })
                                .collect()
                        })
                        .collect();
                    start += j.n;
                    let _ = j.reply.send(Ok(rows));
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
