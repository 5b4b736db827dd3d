//! Dynamic batching (`--max-batch N --batch-delay-ms D`): requests for a model whose inputs and
//! outputs all have a dynamic first dimension wait up to `D` ms for others; up to `N` rows run
//! as one call (inputs concatenated along the first dimension) and each request gets its own
//! rows of every output back. Requests whose inputs cannot be stacked (other names, types or
//! inner dimensions) run on their own.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_ops::{Data, Tensor};
use tokio::sync::{mpsc, oneshot};

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::model::Served;

type Outputs = Result<BTreeMap<String, Tensor>, ServeError>;

struct Job {
    feeds: Vec<(String, Tensor)>,
    rows: usize,
    arrived: Instant,
    reply: oneshot::Sender<Outputs>,
}

pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

/// Whether a model can be batched: every input and output starts with the same named
/// dimension (`batch`), which appears nowhere else in their shapes. A first dimension the model
/// computes (NMS's `num_selected`) or one of another name is not a batch.
pub fn batchable(m: &Served) -> bool {
    let first = m.inputs.first().and_then(|t| t.batch_dim.as_ref());
    let Some((name, _)) = first else {
        return false;
    };
    m.inputs
        .iter()
        .chain(&m.outputs)
        .all(|t| matches!(&t.batch_dim, Some((n, elsewhere)) if n == name && !elsewhere))
}

impl Batcher {
    pub fn start(
        model: Arc<Served>,
        metrics: Arc<Metrics>,
        max: usize,
        delay: Duration,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(collect(rx, model, metrics, max.max(1), delay));
        Batcher { tx }
    }

    pub async fn infer(&self, feeds: Vec<(String, Tensor)>, arrived: Instant) -> Outputs {
        let rows = feeds
            .first()
            .and_then(|(_, t)| t.shape.first().copied())
            .unwrap_or(1);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                feeds,
                rows,
                arrived,
                reply,
            })
            .await
            .map_err(|_| ServeError::internal("the batcher has stopped"))?;
        rx.await
            .map_err(|_| ServeError::internal("the batch this request was in failed"))?
    }
}

/// Gathers jobs into batches and starts each batch's run without waiting for it.
async fn collect(
    mut rx: mpsc::Receiver<Job>,
    model: Arc<Served>,
    metrics: Arc<Metrics>,
    max: usize,
    delay: Duration,
) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let deadline = tokio::time::Instant::now() + delay;
        let mut rows = first.rows;
        let mut jobs = vec![first];
        while rows < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) if rows + j.rows <= max => {
                    rows += j.rows;
                    jobs.push(j);
                }
                Ok(Some(j)) => {
                    pending = Some(j);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let (model, metrics) = (Arc::clone(&model), Arc::clone(&metrics));
        tokio::spawn(async move { run_batch(jobs, &model, &metrics).await });
    }
}

async fn run_batch(mut jobs: Vec<Job>, model: &Served, metrics: &Metrics) {
    let arrived = jobs
        .iter()
        .map(|j| j.arrived)
        .min()
        .unwrap_or_else(Instant::now);
    // Inputs in one order, whatever order each client sent them in.
    for j in &mut jobs {
        j.feeds.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if jobs.len() > 1 && stackable(&jobs) {
        let rows: Vec<usize> = jobs.iter().map(|j| j.rows).collect();
        let total: usize = rows.iter().sum();
        let feeds = (0..jobs[0].feeds.len())
            .map(|i| {
                let parts: Vec<&Tensor> = jobs.iter().map(|j| &j.feeds[i].1).collect();
                (jobs[0].feeds[i].0.clone(), stack(&parts))
            })
            .collect();
        match model.infer(feeds, metrics, arrived).await {
            Ok(outs) if outs.values().all(|t| t.shape.first() == Some(&total)) => {
                let mut split: Vec<BTreeMap<String, Tensor>> = vec![BTreeMap::new(); jobs.len()];
                for (name, t) in outs {
                    for (k, part) in unstack(&t, &rows).into_iter().enumerate() {
                        split[k].insert(name.clone(), part);
                    }
                }
                for (j, out) in jobs.into_iter().zip(split) {
                    let _ = j.reply.send(Ok(out));
                }
                return;
            }
            // A batch that failed, or whose outputs do not follow its rows: each request on
            // its own below, so that one request's error stays its own.
            _ => {}
        }
    }
    for j in jobs {
        let r = model.infer(j.feeds, metrics, j.arrived).await;
        let _ = j.reply.send(r);
    }
}

/// Every job has the same inputs in the same order, each of one type and inner shape.
fn stackable(jobs: &[Job]) -> bool {
    let first = &jobs[0].feeds;
    jobs.iter().all(|j| {
        j.feeds.len() == first.len()
            && j.feeds.iter().zip(first).all(|((n, t), (n0, t0))| {
                n == n0
                    && t.dtype() == t0.dtype()
                    && !t.shape.is_empty()
                    && t.shape.len() == t0.shape.len()
                    && t.shape[1..] == t0.shape[1..]
                    && t.shape[0] == j.rows
            })
    })
}

/// Runs `$body` over the typed elements of each variant, rebuilding the same variant;
/// packed data (no protocol datatype, refused when the response is written) passes whole.
macro_rules! each_data {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            Data::F32($v) => Data::F32($body),
            Data::F64($v) => Data::F64($body),
            Data::F16($v) => Data::F16($body),
            Data::BF16($v) => Data::BF16($body),
            Data::I8($v) => Data::I8($body),
            Data::I16($v) => Data::I16($body),
            Data::I32($v) => Data::I32($body),
            Data::I64($v) => Data::I64($body),
            Data::U8($v) => Data::U8($body),
            Data::U16($v) => Data::U16($body),
            Data::U32($v) => Data::U32($body),
            Data::U64($v) => Data::U64($body),
            Data::Bool($v) => Data::Bool($body),
            Data::Str($v) => Data::Str($body),
            packed @ Data::Packed { .. } => packed.clone(),
        }
    };
}

/// Tensors of one type and inner shape (`stackable`), concatenated along the first dimension.
fn stack(parts: &[&Tensor]) -> Tensor {
    let mut shape = parts[0].shape.clone();
    shape[0] = parts.iter().map(|t| t.shape[0]).sum();
    macro_rules! cat {
        ($($var:ident),*) => {
            match &parts[0].data {
                $(Data::$var(_) => Data::$var(
                    parts
                        .iter()
                        .flat_map(|p| match &p.data {
                            Data::$var(v) => v.clone(),
                            _ => Vec::new(),
                        })
                        .collect(),
                ),)*
                packed @ Data::Packed { .. } => packed.clone(),
            }
        };
    }
    let data = cat!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, Str);
    Tensor::new(shape, data)
}

/// A tensor's first dimension cut into runs of `rows`.
fn unstack(t: &Tensor, rows: &[usize]) -> Vec<Tensor> {
    let total: usize = rows.iter().sum();
    let per_row = t.len().checked_div(total).unwrap_or(0);
    let mut out = Vec::with_capacity(rows.len());
    let mut at = 0;
    for &r in rows {
        let mut shape = t.shape.clone();
        shape[0] = r;
        let (a, b) = (at * per_row, (at + r) * per_row);
        let data = each_data!(&t.data, v => v[a..b].to_vec());
        out.push(Tensor::new(shape, data));
        at += r;
    }
    out
}
