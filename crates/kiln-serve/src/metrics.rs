//! Prometheus metrics, per model and protocol: requests, failures, request latency, time queued
//! before the model ran, and rows per run (batch size).
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub failures: IntCounterVec,
    pub latency: HistogramVec,
    pub queue: HistogramVec,
    pub batch_size: HistogramVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "kiln_inference_requests_total",
                "Inference requests received",
            ),
            &["model", "protocol"],
        )
        .expect("metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "kiln_inference_failures_total",
                "Inference requests that failed",
            ),
            &["model", "protocol"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kiln_inference_request_duration_seconds",
                "Time from a request's arrival to its response",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "protocol"],
        )
        .expect("metric");
        let queue = HistogramVec::new(
            HistogramOpts::new(
                "kiln_inference_queue_duration_seconds",
                "Time a request waited before its model ran",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("kiln_inference_batch_size", "Rows per model run")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            &["model"],
        )
        .expect("metric");
        for m in [&requests, &failures] {
            registry.register(Box::new(m.clone())).expect("register");
        }
        for m in [&latency, &queue, &batch_size] {
            registry.register(Box::new(m.clone())).expect("register");
        }
        Metrics {
            registry,
            requests,
            failures,
            latency,
            queue,
            batch_size,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
