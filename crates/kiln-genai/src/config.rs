//! The parts of onnxruntime-genai's `genai_config.json` a decoder-only model needs: the model
//! file, the names of its inputs and outputs (the caches' with a `%d` for the layer), the cache's
//! shape, the special tokens, and the search defaults.
use std::path::Path;

use serde_json::Value;

use crate::search::SearchOptions;
use crate::GenError;

#[derive(Clone, Debug)]
pub struct GenaiConfig {
    /// `model.type` (llama, phi3, qwen2, ...).
    pub model_type: String,
    pub filename: String,
    pub input_ids: String,
    pub attention_mask: Option<String>,
    pub position_ids: Option<String>,
    pub past_key: String,
    pub past_value: String,
    pub logits: String,
    pub present_key: String,
    pub present_value: String,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_size: usize,
    pub context_length: usize,
    /// Tokens that end a sequence.
    pub eos: Vec<u32>,
    pub pad: u32,
    /// `model.bos_token_id`: what an empty prompt starts with.
    pub bos: Option<u32>,
    pub search: SearchOptions,
    /// `search.past_present_share_buffer`: the caches are max-length buffers that attention
    /// writes in place (GroupQueryAttention's shared buffer), not grown each step.
    pub share_buffer: bool,
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn text(v: &Value, path: &[&str]) -> Result<String, GenError> {
    field(v, path)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| GenError::Config(format!("{} is missing or not text", path.join("."))))
}

fn count(v: &Value, path: &[&str]) -> Result<usize, GenError> {
    field(v, path)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| GenError::Config(format!("{} is missing or not a count", path.join("."))))
}

/// One id or a list of ids.
fn ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        Some(x) => x.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        None => Vec::new(),
    }
}

impl GenaiConfig {
    pub fn load(dir: &Path) -> Result<GenaiConfig, GenError> {
        let path = dir.join("genai_config.json");
        let raw = std::fs::read_to_string(&path)
            .map_err(|e| GenError::Config(format!("{}: {e}", path.display())))?;
        let v: Value = serde_json::from_str(&raw)
            .map_err(|e| GenError::Config(format!("{}: {e}", path.display())))?;
        let d = ["model", "decoder"];
        let io = |kind: &str, name: &str| -> Option<String> {
            field(&v, &[d[0], d[1], kind, name])
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let need = |kind: &str, name: &str| {
            io(kind, name)
                .ok_or_else(|| GenError::Config(format!("model.decoder.{kind}.{name} is missing")))
        };
        let eos = ids(field(&v, &["model", "eos_token_id"]));
        let pad = ids(field(&v, &["model", "pad_token_id"]))
            .first()
            .copied()
            .or(eos.first().copied())
            .unwrap_or(0);
        let context_length = count(&v, &["model", "context_length"])?;
        let search = SearchOptions::from_config(field(&v, &["search"]), context_length);
        Ok(GenaiConfig {
            model_type: field(&v, &["model", "type"])
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            filename: text(&v, &["model", "decoder", "filename"])?,
            input_ids: need("inputs", "input_ids")?,
            attention_mask: io("inputs", "attention_mask"),
            position_ids: io("inputs", "position_ids"),
            past_key: need("inputs", "past_key_names")?,
            past_value: need("inputs", "past_value_names")?,
            logits: need("outputs", "logits")?,
            present_key: need("outputs", "present_key_names")?,
            present_value: need("outputs", "present_value_names")?,
            layers: count(&v, &["model", "decoder", "num_hidden_layers"])?,
            kv_heads: count(&v, &["model", "decoder", "num_key_value_heads"])?,
            head_size: count(&v, &["model", "decoder", "head_size"])?,
            context_length,
            eos,
            pad,
            bos: ids(field(&v, &["model", "bos_token_id"])).first().copied(),
            search,
            share_buffer: field(&v, &["search", "past_present_share_buffer"])
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// A cache input or output name for layer `i` (`%d` replaced).
    pub fn layer_name(pattern: &str, i: usize) -> String {
        pattern.replace("%d", &i.to_string())
    }
}
