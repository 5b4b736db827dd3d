//! OpenAI-compatible text generation for `kiln serve --llm NAME=DIR`: `GET /v1/models`,
//! `POST /v1/completions` and `POST /v1/chat/completions` (the prompt from the model folder's
//! chat template), whole answers or streamed as server-sent events. Every request gets its own
//! generator and KV cache over the model's one shared session, on a blocking thread; a client
//! that goes away stops its generation. Bad requests get a 4xx with OpenAI's error body naming
//! the parameter.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use kiln_genai::{Generator, Message, Model, SearchOptions, TextStream};

use crate::App;

/// The language models served, by name.
pub type Llms = std::collections::HashMap<String, Arc<Model>>;

/// Loads each `--llm NAME=DIR`.
pub fn load(
    llms: &[(String, PathBuf)],
    session: &kiln_runtime::SessionOptions,
) -> Result<Llms, String> {
    let mut out = Llms::new();
    for (name, dir) in llms {
        let m = Model::load(dir, session.clone())
            .map_err(|e| format!("--llm {name}={}: {e}", dir.display()))?;
        if out.insert(name.clone(), Arc::new(m)).is_some() {
            return Err(format!("--llm {name} is given twice"));
        }
    }
    Ok(out)
}

/// An OpenAI error: the status, the message and the parameter at fault.
pub struct ApiError(StatusCode, String, Option<&'static str>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.0 == StatusCode::NOT_FOUND {
            "not_found_error"
        } else if self.0.is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        };
        let body =
            json!({"error": {"message": self.1, "type": kind, "param": self.2, "code": null}});
        (self.0, Json(body)).into_response()
    }
}

fn bad(param: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into(), Some(param))
}

pub async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let mut names: Vec<&String> = app.llms.keys().collect();
    names.sort();
    let data: Vec<Value> = names
        .iter()
        .map(|n| json!({"id": n, "object": "model", "created": 0, "owned_by": "kiln"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn completions(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, ApiError> {
    respond(app, body, false).await
}

pub async fn chat_completions(
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    respond(app, body, true).await
}

/// A request, read and checked.
struct Job {
    model: Arc<Model>,
    name: String,
    prompt: Vec<u32>,
    opts: SearchOptions,
    stop: Vec<String>,
    stream: bool,
}

fn number(req: &Value, key: &'static str) -> Result<Option<f64>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(key, format!("'{key}' must be a number, got {v}"))),
    }
}

/// The request's text: a completion's prompt, or the conversation through the chat template.
fn prompt_text(req: &Value, model: &Model, chat: bool) -> Result<String, ApiError> {
    if chat {
        let msgs = req
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("messages", "'messages' must be a non-empty list"))?;
        let mut out = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("messages", format!("messages[{i}] has no 'role'")))?;
            // Content as a string, or as a list of text parts.
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (
                            p.get("type").and_then(Value::as_str),
                            p.get("text").and_then(Value::as_str),
                        ) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => {
                                return Err(bad(
                                    "messages",
                                    format!("messages[{i}]: only text content parts are supported"),
                                ))
                            }
                        }
                    }
                    text
                }
                Some(Value::Null) | None => String::new(),
                Some(v) => {
                    return Err(bad(
                        "messages",
                        format!("messages[{i}].content must be text, got {v}"),
                    ))
                }
            };
            out.push(Message {
                role: role.to_string(),
                content,
            });
        }
        return model
            .chat
            .render(&out, true, None)
            .map_err(|e| bad("messages", e.to_string()));
    }
    match req.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(a[0].as_str().unwrap_or("").to_string())
        }
        Some(Value::Array(_)) => Err(bad(
            "prompt",
            "one prompt per request: 'prompt' must be a string",
        )),
        None => Err(bad("prompt", "'prompt' is required")),
        Some(v) => Err(bad("prompt", format!("'prompt' must be a string, got {v}"))),
    }
}

fn parse(app: &App, body: &[u8], chat: bool) -> Result<Job, ApiError> {
    let req: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
            None,
        )
    })?;
    if !req.is_object() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object".into(),
            None,
        ));
    }
    let name = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("model", "'model' is required"))?;
    let model = app.llms.get(name).cloned().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("the model '{name}' does not exist"),
            Some("model"),
        )
    })?;
    // Features kiln does not have are refused by name rather than ignored.
    if number(&req, "n")?.is_some_and(|n| n != 1.0) {
        return Err(bad("n", "only n = 1 is supported"));
    }
    if number(&req, "best_of")?.is_some_and(|n| n != 1.0) {
        return Err(bad("best_of", "only best_of = 1 is supported"));
    }
    for key in ["logprobs", "top_logprobs", "suffix", "tools"] {
        if req
            .get(key)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        {
            return Err(bad(key_name(key), format!("'{key}' is not supported")));
        }
    }
    if req.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(bad("echo", "'echo' is not supported"));
    }
    let text = prompt_text(&req, &model, chat)?;
    let prompt = model
        .encode(&text)
        .map_err(|e| bad("prompt", e.to_string()))?;
    if prompt.is_empty() {
        return Err(bad(
            if chat { "messages" } else { "prompt" },
            "the prompt has no tokens",
        ));
    }
    let context = model.config.context_length;
    let max_key = if req.get("max_completion_tokens").is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let max_new = match number(&req, max_key)? {
        Some(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
        Some(n) => {
            return Err(bad(
                key_name(max_key),
                format!("'{max_key}' must be a positive integer, got {n}"),
            ))
        }
        // OpenAI's completions default to 16 tokens; a chat answer runs to the context.
        None if chat => context.saturating_sub(prompt.len()),
        None => 16,
    };
    if prompt.len() + max_new > context {
        return Err(bad(
            key_name(max_key),
            format!(
                "the prompt's {} tokens and {max_key} {max_new} exceed the model's context of {context} tokens",
                prompt.len()
            ),
        ));
    }
    let mut opts = model.config.search.clone();
    opts.max_length = prompt.len() + max_new;
    opts.min_length = 0;
    let temperature = number(&req, "temperature")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(
            "temperature",
            format!("'temperature' must be in [0, 2], got {temperature}"),
        ));
    }
    let top_p = number(&req, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(
            "top_p",
            format!("'top_p' must be in (0, 1], got {top_p}"),
        ));
    }
    opts.do_sample = temperature > 0.0;
    opts.temperature = temperature.max(f64::MIN_POSITIVE) as f32;
    opts.top_p = top_p as f32;
    opts.top_k = match number(&req, "top_k")? {
        Some(k) if k >= 0.0 => k as usize,
        Some(k) => {
            return Err(bad(
                "top_k",
                format!("'top_k' must not be negative, got {k}"),
            ))
        }
        None => 0,
    };
    if let Some(r) = number(&req, "repetition_penalty")? {
        if r <= 0.0 {
            return Err(bad(
                "repetition_penalty",
                format!("'repetition_penalty' must be above 0, got {r}"),
            ));
        }
        opts.repetition_penalty = r as f32;
    }
    opts.seed = match number(&req, "seed")? {
        Some(s) => s as i64 as u64,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    let stop = match req.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(v) => {
            return Err(bad(
                "stop",
                format!("'stop' must be a string or a list of up to 4, got {v}"),
            ))
        }
    };
    if stop.iter().any(String::is_empty) {
        return Err(bad("stop", "a stop sequence is empty"));
    }
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(bad(
                "stream",
                format!("'stream' must be true or false, got {v}"),
            ))
        }
    };
    Ok(Job {
        model,
        name: name.to_string(),
        prompt,
        opts,
        stop,
        stream,
    })
}

/// The static name of a parameter key (the error body wants one).
fn key_name(key: &str) -> &'static str {
    match key {
        "max_completion_tokens" => "max_completion_tokens",
        "max_tokens" => "max_tokens",
        "logprobs" => "logprobs",
        "top_logprobs" => "top_logprobs",
        "suffix" => "suffix",
        _ => "tools",
    }
}

/// What a generation ended with.
struct Outcome {
    tokens: usize,
    finish: &'static str,
}

/// Generates `job`, handing each new piece of text to `emit` (false: the client is gone, stop).
/// Stop sequences end the text before them; text that may begin one is held back until it
/// cannot.
fn generate(job: &Job, mut emit: impl FnMut(&str) -> bool) -> Result<Outcome, String> {
    let mut g = Generator::new(Arc::clone(&job.model), job.opts.clone());
    g.append_tokens(std::slice::from_ref(&job.prompt))
        .map_err(|e| e.to_string())?;
    let mut stream = TextStream::new();
    let mut text = String::new();
    let mut sent = 0;
    let hold = job.stop.iter().map(String::len).max().unwrap_or(1) - 1;
    while !g.is_done() {
        g.generate_next_token().map_err(|e| e.to_string())?;
        let eos = g.ended_by_eos(0);
        let new = g.generated(0);
        // The EOS token itself is not text.
        let upto = if eos { new.len() - 1 } else { new.len() };
        text.push_str(
            &stream
                .next(&job.model, &new[..upto])
                .map_err(|e| e.to_string())?,
        );
        if let Some(at) = job.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            let piece = &text[sent.min(at)..at];
            if !piece.is_empty() {
                emit(piece);
            }
            return Ok(Outcome {
                tokens: new.len(),
                finish: "stop",
            });
        }
        let mut safe = if g.is_done() {
            text.len()
        } else {
            text.len().saturating_sub(hold)
        };
        while !text.is_char_boundary(safe) {
            safe -= 1;
        }
        if safe > sent {
            if !emit(&text[sent..safe]) {
                return Ok(Outcome {
                    tokens: new.len(),
                    finish: "stop",
                });
            }
            sent = safe;
        }
        if g.is_done() {
            return Ok(Outcome {
                tokens: new.len(),
                finish: if eos { "stop" } else { "length" },
            });
        }
    }
    Ok(Outcome {
        tokens: g.generated(0).len(),
        finish: "length",
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request_id(chat: bool) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{n:x}", if chat { "chatcmpl" } else { "cmpl" })
}

/// A response chunk (streamed) or body: the text as a completion's or a chat message's.
fn choice(chat: bool, stream: bool, text: &str, finish: Option<&str>) -> Value {
    if !chat {
        return json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish});
    }
    if stream {
        json!({"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": finish})
    } else {
        json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
    }
}

async fn respond(app: Arc<App>, body: Bytes, chat: bool) -> Result<Response, ApiError> {
    let job = parse(&app, &body, chat)?;
    let (id, created) = (request_id(chat), now());
    let object = match (chat, job.stream) {
        (true, true) => "chat.completion.chunk",
        (true, false) => "chat.completion",
        (false, _) => "text_completion",
    };
    if !job.stream {
        let (job, out) = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            let out = generate(&job, |piece| {
                text.push_str(piece);
                true
            });
            (job, out.map(|o| (o, text)))
        })
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("generation failed: {e}"),
                None,
            )
        })?;
        let (o, text) = out.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e, None))?;
        let body = json!({
            "id": id, "object": object, "created": created, "model": job.name,
            "choices": [choice(chat, false, &text, Some(o.finish))],
            "usage": {"prompt_tokens": job.prompt.len(), "completion_tokens": o.tokens,
                      "total_tokens": job.prompt.len() + o.tokens},
        });
        return Ok(Json(body).into_response());
    }
    let (tx, rx) = mpsc::channel::<Result<Event, std::convert::Infallible>>(64);
    tokio::task::spawn_blocking(move || {
        let chunk = |choice: Value| {
            let v = json!({"id": id, "object": object, "created": created, "model": job.name, "choices": [choice]});
            Ok(Event::default().data(v.to_string()))
        };
        let out = generate(&job, |piece| {
            tx.blocking_send(chunk(choice(chat, true, piece, None)))
                .is_ok()
        });
        let last = match out {
            Ok(o) => chunk(choice(chat, true, "", Some(o.finish))),
            // Headers are gone by now: the error travels as an event of its own.
            Err(e) => Ok(Event::default()
                .data(json!({"error": {"message": e, "type": "server_error"}}).to_string())),
        };
        let _ = tx.blocking_send(last);
        let _ = tx.blocking_send(Ok(Event::default().data("[DONE]")));
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response())
}
