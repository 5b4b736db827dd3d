//! Text generation on kiln with the decoder models onnxruntime-genai's model builder writes: a
//! folder with `genai_config.json`, `model.onnx` (GroupQueryAttention over a BNSH cache) and
//! the tokenizer (`tokenizer.json`, read by the `tokenizers` crate).
//!
//! A [`Generator`] runs the prompts of a batch together (right-padded, as onnxruntime-genai
//! pads them: the attention mask tells GroupQueryAttention each row's length), then one token
//! per row per step, feeding each step's present caches back as the next step's past. Search
//! is greedy or sampled ([`SearchOptions`]); a row stops at an EOS token or at `max_length`.
mod chat;
mod config;
mod last_logits;
mod search;

use std::ops::Deref;
use std::path::Path;
use std::time::Instant;

pub use chat::{ChatTemplate, Message};
pub use config::GenaiConfig;
use kiln_runtime::{Data, Session, Tensor, Value};
pub use kiln_runtime::{Level, SessionOptions};
pub use search::{argmax, choose, Rng, SearchOptions};

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("genai_config.json: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Model(String),
    #[error("{0}")]
    Usage(String),
}

/// A loaded model folder: the session, its config and its tokenizer.
pub struct Model {
    pub config: GenaiConfig,
    pub session: Session,
    /// Whether the session computes logits only at the positions the search reads (see
    /// [`last_logits`]), taking them as an extra input.
    pub logits_at_positions: bool,
    pub tokenizer: tokenizers::Tokenizer,
    pub chat: ChatTemplate,
}

impl Model {
    pub fn load(dir: &Path, opts: SessionOptions) -> Result<Model, GenError> {
        let config = GenaiConfig::load(dir)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| GenError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        let path = dir.join(&config.filename);
        let mut graph = kiln_ir::Model::load(&path)
            .map_err(|e| GenError::Model(format!("{}: {e}", path.display())))?;
        let logits_at_positions = last_logits::rewrite(&mut graph, &config.logits).is_ok();
        let session =
            Session::from_model(graph, opts).map_err(|e| GenError::Model(e.to_string()))?;
        Ok(Model {
            config,
            session,
            logits_at_positions,
            tokenizer,
            chat: ChatTemplate::load(dir)?,
        })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, GenError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| GenError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, GenError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| GenError::Tokenizer(e.to_string()))
    }
}

/// Time spent so far: the prompt's tokens and the generated ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub prefill_tokens: usize,
    pub prefill_s: f64,
    pub decode_tokens: usize,
    pub decode_s: f64,
}

/// Generation for a batch of sequences, over a model it borrows (`&Model`) or shares
/// (`Arc<Model>`: a server's requests, a Python object).
pub struct Generator<M: Deref<Target = Model>> {
    model: M,
    opts: SearchOptions,
    rng: Rng,
    seqs: Vec<Vec<u32>>,
    prompt_lens: Vec<usize>,
    done: Vec<bool>,
    /// Each row's attention mask (1 for its tokens, 0 for padding).
    mask: Vec<Vec<i64>>,
    /// The caches, as the next step's past inputs.
    past: Vec<(String, Value)>,
    /// Each row's logits for its next token.
    logits: Option<Vec<Vec<f32>>>,
    pub timing: Timing,
}

impl<M: Deref<Target = Model>> Generator<M> {
    pub fn new(model: M, opts: SearchOptions) -> Generator<M> {
        let rng = Rng::new(opts.seed);
        Generator {
            model,
            opts,
            rng,
            seqs: Vec::new(),
            prompt_lens: Vec::new(),
            done: Vec::new(),
            mask: Vec::new(),
            past: Vec::new(),
            logits: None,
            timing: Timing::default(),
        }
    }

    /// Runs the prompts (one per batch row) through the model.
    pub fn append_tokens(&mut self, prompts: &[Vec<u32>]) -> Result<(), GenError> {
        if !self.seqs.is_empty() {
            return Err(GenError::Usage(
                "append_tokens after the prompts: only one prompt per generator".into(),
            ));
        }
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(GenError::Usage(
                "every prompt needs at least one token".into(),
            ));
        }
        let c = &self.model.config;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest >= self.opts.max_length.min(c.context_length) {
            return Err(GenError::Usage(format!(
                "a prompt of {longest} tokens leaves no room under max_length {}",
                self.opts.max_length.min(c.context_length)
            )));
        }
        let b = prompts.len();
        let mut ids = vec![c.pad as i64; b * longest];
        for (r, p) in prompts.iter().enumerate() {
            for (i, &t) in p.iter().enumerate() {
                ids[r * longest + i] = t as i64;
            }
            self.mask
                .push((0..longest).map(|i| (i < p.len()) as i64).collect());
        }
        self.seqs = prompts.to_vec();
        self.prompt_lens = prompts.iter().map(Vec::len).collect();
        self.done = vec![false; b];
        // A shared buffer holds max_length rows from the start; GroupQueryAttention writes
        // each step's rows into it in place (the runtime hands it over), so no step copies it.
        let rows = if c.share_buffer {
            self.opts.max_length.min(c.context_length)
        } else {
            0
        };
        self.past = (0..c.layers)
            .flat_map(|i| {
                [&c.past_key, &c.past_value].map(|pat| {
                    let shape = vec![b, c.kv_heads, rows, c.head_size];
                    let t = Tensor::new(
                        shape,
                        Data::F32(vec![0.0; b * c.kv_heads * rows * c.head_size]),
                    );
                    (GenaiConfig::layer_name(pat, i), Value::Tensor(t))
                })
            })
            .collect();
        // The decode steps' inputs grow to these shapes: checking their memory once here lets
        // each step skip a walk of the graph.
        let max_len = self.opts.max_length.min(c.context_length);
        let mut shapes = vec![(c.input_ids.as_str(), vec![b, 1])];
        if let Some(m) = &c.attention_mask {
            shapes.push((m.as_str(), vec![b, max_len]));
        }
        if let Some(p) = &c.position_ids {
            shapes.push((p.as_str(), vec![b, 1]));
        }
        if self.model.logits_at_positions {
            shapes.push((last_logits::POSITIONS, vec![b, 1, 1]));
        }
        let names: Vec<String> = self.past.iter().map(|(n, _)| n.clone()).collect();
        let cache = vec![b, c.kv_heads, rows.max(max_len - 1), c.head_size];
        shapes.extend(names.iter().map(|n| (n.as_str(), cache.clone())));
        self.model.session.warm_memory_check(&shapes);
        let start = Instant::now();
        let last: Vec<usize> = prompts.iter().map(|p| p.len() - 1).collect();
        self.step(ids, longest, &last)?;
        self.timing.prefill_tokens += prompts.iter().map(Vec::len).sum::<usize>();
        self.timing.prefill_s += start.elapsed().as_secs_f64();
        Ok(())
    }

    /// One run of the model on `ids` (`[B, s]`), keeping the caches and each row's logits at
    /// position `last[row]`.
    fn step(&mut self, ids: Vec<i64>, s: usize, last: &[usize]) -> Result<(), GenError> {
        let c = &self.model.config;
        let b = self.seqs.len();
        let total = self.mask[0].len();
        let mut inputs = vec![(
            c.input_ids.clone(),
            Value::Tensor(Tensor::new(vec![b, s], Data::I64(ids))),
        )];
        if let Some(m) = &c.attention_mask {
            let flat: Vec<i64> = self.mask.iter().flatten().copied().collect();
            inputs.push((
                m.clone(),
                Value::Tensor(Tensor::new(vec![b, total], Data::I64(flat))),
            ));
        }
        if let Some(p) = &c.position_ids {
            // Each row's positions continue from its length.
            let mut pos = Vec::with_capacity(b * s);
            for m in &self.mask {
                let len: i64 = m.iter().sum();
                let first = len - s as i64;
                pos.extend((0..s as i64).map(|i| (first + i).max(0)));
            }
            inputs.push((
                p.clone(),
                Value::Tensor(Tensor::new(vec![b, s], Data::I64(pos))),
            ));
        }
        let at_positions = self.model.logits_at_positions;
        if at_positions {
            inputs.push((
                last_logits::POSITIONS.to_string(),
                Value::Tensor(Tensor::new(
                    vec![b, 1, 1],
                    Data::I64(last.iter().map(|&i| i as i64).collect()),
                )),
            ));
        }
        inputs.append(&mut self.past);
        let outs = self
            .model
            .session
            .run(inputs)
            .map_err(|e| GenError::Model(e.to_string()))?;
        let mut logits = None;
        for (name, v) in outs {
            if name == c.logits {
                logits = Some(v);
                continue;
            }
            let past = (0..c.layers).find_map(|i| {
                if name == GenaiConfig::layer_name(&c.present_key, i) {
                    Some(GenaiConfig::layer_name(&c.past_key, i))
                } else if name == GenaiConfig::layer_name(&c.present_value, i) {
                    Some(GenaiConfig::layer_name(&c.past_value, i))
                } else {
                    None
                }
            });
            if let Some(p) = past {
                self.past.push((p, v));
            }
        }
        let Some(Value::Tensor(l)) = logits else {
            return Err(GenError::Model(format!("no '{}' output", c.logits)));
        };
        let Data::F32(lv) = &l.data else {
            return Err(GenError::Model("logits are not float32".into()));
        };
        let v = *l.shape.last().unwrap_or(&0);
        let rows = l.shape.iter().rev().skip(1).product::<usize>();
        let per_row = if at_positions { 1 } else { s };
        if v == 0 || rows != b * per_row {
            return Err(GenError::Model(format!(
                "logits of shape {:?} for a batch of {b} × {per_row} positions",
                l.shape
            )));
        }
        self.logits = Some(
            last.iter()
                .enumerate()
                .map(|(r, &i)| {
                    let at = if at_positions { r } else { r * s + i };
                    lv[at * v..(at + 1) * v].to_vec()
                })
                .collect(),
        );
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        !self.done.is_empty() && self.done.iter().all(|&d| d)
    }

    /// Chooses each unfinished row's next token and, unless every row is finished, runs the
    /// model on them.
    pub fn generate_next_token(&mut self) -> Result<(), GenError> {
        let Some(logits) = self.logits.take() else {
            return Err(GenError::Usage(
                "generate_next_token before append_tokens".into(),
            ));
        };
        if self.is_done() {
            return Ok(());
        }
        // Decode time covers choosing the tokens too, as a caller timing this call sees it.
        let start = Instant::now();
        let c = &self.model.config;
        let max_len = self.opts.max_length.min(c.context_length);
        let mut next = Vec::with_capacity(self.seqs.len());
        for r in 0..self.seqs.len() {
            if self.done[r] {
                next.push(c.pad as i64);
                continue;
            }
            let t = if self.seqs[r].len() < self.opts.min_length && !c.eos.is_empty() {
                let mut l = logits[r].clone();
                for &e in &c.eos {
                    if let Some(x) = l.get_mut(e as usize) {
                        *x = f32::NEG_INFINITY;
                    }
                }
                choose(&l, &self.seqs[r], &self.opts, &mut self.rng)
            } else {
                choose(&logits[r], &self.seqs[r], &self.opts, &mut self.rng)
            };
            self.seqs[r].push(t);
            self.timing.decode_tokens += 1;
            if c.eos.contains(&t) || self.seqs[r].len() >= max_len {
                self.done[r] = true;
            }
            next.push(t as i64);
        }
        if self.is_done() {
            self.timing.decode_s += start.elapsed().as_secs_f64();
            return Ok(());
        }
        for m in &mut self.mask {
            m.push(1);
        }
        let b = self.seqs.len();
        self.step(next, 1, &vec![0; b])?;
        self.timing.decode_s += start.elapsed().as_secs_f64();
        Ok(())
    }

    /// Row `r`'s tokens: its prompt, then what was generated.
    pub fn sequence(&self, r: usize) -> &[u32] {
        &self.seqs[r]
    }

    /// The batch's rows.
    pub fn rows(&self) -> usize {
        self.seqs.len()
    }

    /// Each row's latest token (for a finished row, its last one).
    pub fn last_tokens(&self) -> Vec<u32> {
        self.seqs
            .iter()
            .map(|s| s.last().copied().unwrap_or(0))
            .collect()
    }

    /// Whether row `r` is finished.
    pub fn row_done(&self, r: usize) -> bool {
        self.done.get(r).copied().unwrap_or(false)
    }

    /// Whether row `r` ended at an EOS token (rather than at max_length).
    pub fn ended_by_eos(&self, r: usize) -> bool {
        self.row_done(r)
            && self
                .generated(r)
                .last()
                .is_some_and(|t| self.model.config.eos.contains(t))
    }

    /// Row `r`'s generated tokens.
    pub fn generated(&self, r: usize) -> &[u32] {
        &self.seqs[r][self.prompt_lens[r]..]
    }
}

/// Decodes a growing token list and hands out only what is new, holding back a trailing
/// incomplete character (a byte-level token may carry half of one).
pub struct TextStream {
    shown: usize,
}

impl TextStream {
    pub fn new() -> TextStream {
        TextStream { shown: 0 }
    }

    /// The text of `tokens` past what earlier calls returned.
    pub fn next(&mut self, model: &Model, tokens: &[u32]) -> Result<String, GenError> {
        let text = model.decode(tokens)?;
        if text.ends_with('\u{fffd}') || text.len() < self.shown {
            return Ok(String::new());
        }
        let new = text.get(self.shown..).unwrap_or("").to_string();
        self.shown = text.len();
        Ok(new)
    }
}

impl Default for TextStream {
    fn default() -> Self {
        TextStream::new()
    }
}
