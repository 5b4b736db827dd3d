//! The protocol's REST endpoints (health, server and model metadata, model readiness,
//! inference with JSON data and with the binary tensor data extension) and `/metrics`.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, FromRequestParts, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json_};

use kiln_ops::Tensor;

use crate::body::{self, Limit};
use crate::error::ServeError;
use crate::model::Served;
use crate::tensor;
use crate::App;

/// The header that says how many leading bytes of a body are the JSON part.
const HEADER_LENGTH: &str = "inference-header-content-length";

pub fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(crate::openai::models))
        .route("/v1/completions", post(crate::openai::completions))
        .route(
            "/v1/chat/completions",
            post(crate::openai::chat_completions),
        )
        .layer(Extension(Limit(max_body)))
        .with_state(app)
}

async fn live() -> Json<Json_> {
    Json(json!({ "live": true }))
}

async fn ready() -> Json<Json_> {
    Json(json!({ "ready": true }))
}

async fn server_metadata() -> Json<Json_> {
    Json(json!({
        "name": "kiln",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

pub(crate) fn find<'a>(
    app: &'a App,
    name: &str,
    version: Option<&str>,
) -> Result<&'a Arc<Served>, ServeError> {
    let m = app
        .models
        .get(name)
        .ok_or_else(|| ServeError::not_found(format!("unknown model '{name}'")))?;
    match version {
        Some(v) if v != m.version => Err(ServeError::not_found(format!(
            "model '{name}' has no version '{v}' (serving version {})",
            m.version
        ))),
        _ => Ok(m),
    }
}

fn describe(m: &Served) -> Json_ {
    let list = |ts: &[crate::model::TensorMeta]| {
        ts.iter()
            .map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }))
            .collect::<Vec<_>>()
    };
    json!({
        "name": m.name,
        "versions": [m.version],
        "platform": "onnx",
        "inputs": list(&m.inputs),
        "outputs": list(&m.outputs),
    })
}

/// A route's `{name}` and, on the `/versions/{version}` routes, the version. A path that does
/// not decode (a name that is not UTF-8) is a 400 in the protocol's `{"error"}` form.
struct ModelPath(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ModelPath {
    type Rejection = ServeError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ServeError> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ModelPath(p))
            .map_err(|e| ServeError::bad(format!("the request path: {}", e.body_text())))
    }
}

fn model_of<'a>(app: &'a App, p: &HashMap<String, String>) -> Result<&'a Arc<Served>, ServeError> {
    let name = p.get("name").map_or("", String::as_str);
    find(app, name, p.get("version").map(String::as_str))
}

async fn model_metadata(State(app): State<Arc<App>>, ModelPath(p): ModelPath) -> Response {
    match model_of(&app, &p) {
        Ok(m) => Json(describe(m)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn model_ready(State(app): State<Arc<App>>, ModelPath(p): ModelPath) -> Response {
    match model_of(&app, &p) {
        Ok(m) => Json(json!({ "name": m.name, "ready": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Json_>,
    inputs: Vec<InputTensor>,
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Json_>,
    data: Option<Json_>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Json_>,
}

async fn infer(
    State(app): State<Arc<App>>,
    Extension(Limit(max)): Extension<Limit>,
    ModelPath(p): ModelPath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A body over --max-request-bytes (413) or cut short answers in the protocol's form too.
    let body = match body::read(&headers, body, max).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let name = p.get("name").cloned().unwrap_or_default();
    infer_any(app, name, p.get("version").cloned(), headers, body).await
}

async fn infer_any(
    app: Arc<App>,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let label = if app.models.contains_key(&name) {
        name.as_str()
    } else {
        "<unknown>"
    };
    app.metrics
        .requests
        .with_label_values(&[label, "http"])
        .inc();
    let bytes_in = body.len();
    let result = infer_inner(&app, &name, version.as_deref(), &headers, body, arrived).await;
    app.metrics
        .latency
        .with_label_values(&[label, "http"])
        .observe(arrived.elapsed().as_secs_f64());
    match result {
        Ok(r) => {
            tracing::info!(
                model = %name, status = 200, bytes_in,
                latency_ms = arrived.elapsed().as_secs_f64() * 1e3, "infer"
            );
            r
        }
        Err(e) => {
            app.metrics
                .failures
                .with_label_values(&[label, "http"])
                .inc();
            tracing::warn!(
                model = %name, status = e.status.as_u16(), error = %e.message, "infer failed"
            );
            e.into_response()
        }
    }
}

fn flag(params: &Map<String, Json_>, key: &str) -> bool {
    params.get(key).and_then(Json_::as_bool).unwrap_or(false)
}

/// A request decoded against its model: the feeds, and each wanted output with whether it
/// goes back as binary data.
struct Decoded {
    id: Option<String>,
    feeds: Vec<(String, Tensor)>,
    wanted: Vec<(String, bool)>,
}

/// Decoding and encoding run on blocking threads: a large JSON body takes long enough to parse
/// that, on tokio's few workers, it would hold up every other connection.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::internal(format!("a request task failed: {e}")))?
}

async fn infer_inner(
    app: &App,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    arrived: Instant,
) -> Result<Response, ServeError> {
    let model = Arc::clone(find(app, name, version)?);
    let header_length = headers.get(HEADER_LENGTH).cloned();
    let m = Arc::clone(&model);
    let d = blocking(move || decode(&m, header_length.as_ref(), &body)).await?;
    let results = app.infer(&model, d.feeds, arrived).await?;
    blocking(move || encode(&model, d.id, &d.wanted, results)).await
}

fn decode(
    model: &Served,
    header_length: Option<&HeaderValue>,
    body: &[u8],
) -> Result<Decoded, ServeError> {
    // The JSON part, and the binary data after it when the header says where it ends.
    let (head, mut binary) = match header_length {
        Some(v) => {
            let n: usize = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    ServeError::bad("Inference-Header-Content-Length is not a number")
                })?;
            if n > body.len() {
                return Err(ServeError::bad(format!(
                    "Inference-Header-Content-Length {n} is longer than the body ({} bytes)",
                    body.len()
                )));
            }
            body.split_at(n)
        }
        None => (body, &[][..]),
    };
    let req: InferRequest = serde_json::from_slice(head)
        .map_err(|e| ServeError::bad(format!("the request is not valid inference JSON: {e}")))?;
    let mut feeds: Vec<(String, Tensor)> = Vec::with_capacity(req.inputs.len());
    for inp in &req.inputs {
        let dt = model.check_input(&inp.name, &inp.datatype, &feeds)?;
        let (dims, n) = tensor::elements(&inp.name, &inp.shape)?;
        let t = match inp.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().ok_or_else(|| {
                    ServeError::bad(format!(
                        "input '{}': binary_data_size is not a number",
                        inp.name
                    ))
                })? as usize;
                if size > binary.len() {
                    return Err(ServeError::bad(format!(
                        "input '{}': binary_data_size {size} runs past the body",
                        inp.name
                    )));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                tensor::from_binary(&inp.name, dt, dims, n, raw)?
            }
            None => {
                let data = inp.data.as_ref().ok_or_else(|| {
                    ServeError::bad(format!(
                        "input '{}' has neither data nor binary_data_size",
                        inp.name
                    ))
                })?;
                tensor::from_json(&inp.name, dt, dims, n, data)?
            }
        };
        feeds.push((inp.name.clone(), t));
    }
    if !binary.is_empty() {
        return Err(ServeError::bad(format!(
            "{} bytes of binary data follow the inputs that no input claims",
            binary.len()
        )));
    }
    // Which outputs, and which of them go back as binary data.
    let all_binary = flag(&req.parameters, "binary_data_output");
    let wanted: Vec<(String, bool)> = match &req.outputs {
        Some(outs) if !outs.is_empty() => {
            model.check_outputs(outs.iter().map(|o| o.name.as_str()))?;
            outs.iter()
                .map(|o| {
                    (
                        o.name.clone(),
                        flag(&o.parameters, "binary_data") || all_binary,
                    )
                })
                .collect()
        }
        _ => model
            .outputs
            .iter()
            .map(|m| (m.name.clone(), all_binary))
            .collect(),
    };
    Ok(Decoded {
        id: req.id,
        feeds,
        wanted,
    })
}

fn encode(
    model: &Served,
    id: Option<String>,
    wanted: &[(String, bool)],
    mut results: BTreeMap<String, Tensor>,
) -> Result<Response, ServeError> {
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut payload: Vec<u8> = Vec::new();
    for (out_name, as_binary) in wanted {
        let t = results
            .remove(out_name)
            .ok_or_else(|| ServeError::internal(format!("output '{out_name}' was not produced")))?;
        let dt = tensor::datatype(t.dtype()).ok_or_else(|| {
            ServeError::internal(format!("output '{out_name}' has no protocol datatype"))
        })?;
        let mut o = json!({ "name": out_name, "datatype": dt, "shape": t.shape });
        if *as_binary {
            let raw = tensor::to_binary(&t)?;
            o["parameters"] = json!({ "binary_data_size": raw.len() });
            payload.extend_from_slice(&raw);
        } else {
            o["data"] = tensor::to_json(&t)?;
        }
        outputs.push(o);
    }
    let mut resp = json!({
        "model_name": model.name,
        "model_version": model.version,
        "outputs": outputs,
    });
    if let Some(id) = id {
        resp["id"] = json!(id);
    }
    let head = serde_json::to_vec(&resp)
        .map_err(|e| ServeError::internal(format!("encoding the response: {e}")))?;
    if wanted.iter().any(|(_, b)| *b) {
        let len = head.len();
        let mut bytes = head;
        bytes.extend_from_slice(&payload);
        let mut r = (StatusCode::OK, bytes).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(HEADER_LENGTH, HeaderValue::from(len));
        Ok(r)
    } else {
        Ok(([(header::CONTENT_TYPE, "application/json")], head).into_response())
    }
}
