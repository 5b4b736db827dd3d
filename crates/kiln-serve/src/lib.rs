//! `kiln serve`: kiln's models behind the Open Inference Protocol (KServe v2, as Triton and
//! MLServer speak it) over HTTP: health, server and model metadata, readiness, inference with
//! JSON tensors and the binary tensor data extension, dynamic batching, Prometheus metrics on
//! `/metrics` and structured (JSON) log lines. SIGTERM or SIGINT stops accepting, lets the
//! requests in flight finish and returns.
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_ops::Tensor;
use kiln_runtime::SessionOptions;

mod batch;
mod error;
mod http;
mod metrics;
mod model;
pub mod tensor;

pub use error::ServeError;
use metrics::Metrics;
use model::Served;

/// What `kiln serve` was asked for.
#[derive(Clone)]
pub struct ServeConfig {
    /// `--model NAME=PATH`.
    pub models: Vec<(String, PathBuf)>,
    pub repository: Option<PathBuf>,
    pub host: String,
    pub http_port: u16,
    pub session: SessionOptions,
    /// Rows per batch; batching is off below 2.
    pub max_batch: usize,
    pub batch_delay: Duration,
    /// Bodies longer than this are refused (413).
    pub max_request_bytes: usize,
}

/// The server's state, shared by every request.
pub struct App {
    models: HashMap<String, Arc<Served>>,
    batchers: HashMap<String, batch::Batcher>,
    metrics: Arc<Metrics>,
}

impl App {
    async fn infer(
        &self,
        model: &Arc<Served>,
        feeds: Vec<(String, Tensor)>,
        arrived: Instant,
    ) -> Result<BTreeMap<String, Tensor>, ServeError> {
        match self.batchers.get(&model.name) {
            Some(b) => b.infer(feeds, arrived).await,
            None => model.infer(feeds, &self.metrics, arrived).await,
        }
    }
}

/// Loads the models, serves until SIGTERM or SIGINT, and returns once the requests in flight
/// are answered.
pub fn run(cfg: ServeConfig) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let found = model::discover(&cfg.models, cfg.repository.as_deref())?;
    let mut models = HashMap::new();
    for (name, version, path) in found {
        let start = Instant::now();
        let m = Served::load(&name, &version, &path, cfg.session.clone())?;
        tracing::info!(
            model = %name, version = %version, path = %path.display(),
            load_ms = start.elapsed().as_secs_f64() * 1e3, "model loaded"
        );
        models.insert(name, Arc::new(m));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    rt.block_on(serve(cfg, models))
}

async fn serve(cfg: ServeConfig, models: HashMap<String, Arc<Served>>) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let mut batchers = HashMap::new();
    if cfg.max_batch > 1 {
        for (name, m) in &models {
            if batch::batchable(m) {
                batchers.insert(
                    name.clone(),
                    batch::Batcher::start(
                        Arc::clone(m),
                        Arc::clone(&metrics),
                        cfg.max_batch,
                        cfg.batch_delay,
                    ),
                );
            } else {
                tracing::warn!(model = %name, "not batched: an input or output has a fixed first dimension");
            }
        }
    }
    let app = Arc::new(App {
        models,
        batchers,
        metrics,
    });
    let addr: SocketAddr = format!("{}:{}", cfg.host, cfg.http_port)
        .parse()
        .map_err(|e| format!("--host {} --http-port {}: {e}", cfg.host, cfg.http_port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(http = %addr, models = app.models.len(), "serving");
    axum::serve(listener, http::router(app, cfg.max_request_bytes))
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|e| format!("the HTTP server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("stop signal: finishing the requests in flight");
}
