//! `GET /metrics`: Prometheus text of what the server did (requests by route and status,
//! latency, batch sizes, images, in flight, queued).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    batch_size: HistogramVec,
    batch_seconds: HistogramVec,
    images: IntCounterVec,
    pub in_flight: IntGauge,
    queued: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("retrain_requests_total", "HTTP requests answered, by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("retrain_request_seconds", "Time from request to answer, by route")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route"],
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("retrain_batch_size", "Images per ONNX Runtime batch, by model")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            &["model"],
        )
        .expect("valid metric");
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new("retrain_batch_seconds", "ONNX Runtime time per batch, by model"),
            &["model"],
        )
        .expect("valid metric");
        let images = IntCounterVec::new(
            Opts::new("retrain_images_total", "Images classified, by model (images/s: its rate)"),
            &["model"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("retrain_in_flight", "Requests being answered now").expect("valid metric");
        let queued =
            IntGaugeVec::new(Opts::new("retrain_queued", "Requests waiting for a batch, by model"), &["model"])
                .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_seconds.clone()),
            Box::new(images.clone()),
            Box::new(in_flight.clone()),
            Box::new(queued.clone()),
        ] {
            registry.register(c).expect("metric names are distinct");
        }
        Self { registry, requests, latency, batch_size, batch_seconds, images, in_flight, queued }
    }

    pub fn request(&self, route: &str, status: u16, took: Duration) {
        self.requests.with_label_values(&[route, &status.to_string()]).inc();
        self.latency.with_label_values(&[route]).observe(took.as_secs_f64());
    }

    pub fn batch(&self, model: &str, images: usize, took: Duration) {
        self.batch_size.with_label_values(&[model]).observe(images as f64);
        self.batch_seconds.with_label_values(&[model]).observe(took.as_secs_f64());
        self.images.with_label_values(&[model]).inc_by(images as u64);
    }

    pub fn queued(&self, model: &str, change: i64) {
        self.queued.with_label_values(&[model]).add(change);
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
