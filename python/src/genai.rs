//! The native side of `kiln.genai` (onnxruntime-genai's API): a model folder, its generator
//! and a token-by-token text stream over `kiln-genai`. The Python module shapes them into
//! onnxruntime-genai's classes; model runs release the GIL.
use std::sync::Arc;

use pyo3::prelude::*;

use kiln_genai::{GenError, Generator, Message, Model, SearchOptions, SessionOptions, TextStream};

use crate::errors::{Fail, InvalidArgument};

fn err(e: GenError) -> PyErr {
    match e {
        GenError::Usage(m) => InvalidArgument::new_err(m),
        e => Fail::new_err(e.to_string()),
    }
}

#[pyclass(frozen, module = "kiln._kiln")]
pub struct GenaiModel {
    model: Arc<Model>,
}

#[pymethods]
impl GenaiModel {
    #[new]
    #[pyo3(signature = (path, threads=None))]
    fn new(py: Python<'_>, path: std::path::PathBuf, threads: Option<usize>) -> PyResult<Self> {
        let opts = SessionOptions {
            threads,
            ..Default::default()
        };
        let model = py
            .detach(|| Model::load(&path, opts))
            .map_err(|e| Fail::new_err(format!("{}: {e}", path.display())))?;
        Ok(GenaiModel {
            model: Arc::new(model),
        })
    }

    #[getter]
    fn model_type(&self) -> String {
        self.model.config.model_type.clone()
    }

    #[getter]
    fn pad_token_id(&self) -> u32 {
        self.model.config.pad
    }

    #[getter]
    fn eos_token_ids(&self) -> Vec<u32> {
        self.model.config.eos.clone()
    }

    /// `text`'s tokens without the special ones the tokenizer adds around a prompt.
    fn encode_plain(&self, text: &str) -> PyResult<Vec<u32>> {
        let enc = self
            .model
            .tokenizer
            .encode(text, false)
            .map_err(|e| Fail::new_err(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    fn encode(&self, text: &str) -> PyResult<Vec<u32>> {
        self.model.encode(text).map_err(err)
    }

    fn decode(&self, ids: Vec<u32>) -> PyResult<String> {
        self.model.decode(&ids).map_err(err)
    }

    /// The prompt for a conversation (a JSON list of {role, content}).
    #[pyo3(signature = (messages, add_generation_prompt=true, template=None))]
    fn apply_chat_template(
        &self,
        messages: &str,
        add_generation_prompt: bool,
        template: Option<&str>,
    ) -> PyResult<String> {
        let msgs: Vec<Message> = serde_json::from_str(messages)
            .map_err(|e| InvalidArgument::new_err(format!("messages: {e}")))?;
        self.model
            .chat
            .render(&msgs, add_generation_prompt, template)
            .map_err(err)
    }
}

#[pyclass(module = "kiln._kiln")]
pub struct GenaiGenerator {
    gen: Generator<Arc<Model>>,
}

#[pymethods]
impl GenaiGenerator {
    #[new]
    #[pyo3(signature = (model, max_length=None, min_length=None, do_sample=None, temperature=None,
        top_k=None, top_p=None, repetition_penalty=None, random_seed=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model: &GenaiModel,
        max_length: Option<usize>,
        min_length: Option<usize>,
        do_sample: Option<bool>,
        temperature: Option<f32>,
        top_k: Option<usize>,
        top_p: Option<f32>,
        repetition_penalty: Option<f32>,
        random_seed: Option<i64>,
    ) -> PyResult<Self> {
        let c = &model.model.config;
        let mut o: SearchOptions = c.search.clone();
        if let Some(m) = max_length {
            if m == 0 {
                return Err(InvalidArgument::new_err("max_length must be positive"));
            }
            o.max_length = m.min(c.context_length);
        }
        if let Some(m) = min_length {
            o.min_length = m;
        }
        if let Some(d) = do_sample {
            o.do_sample = d;
        }
        if let Some(t) = temperature {
            if !(t > 0.0) {
                return Err(InvalidArgument::new_err(format!(
                    "temperature must be above 0, got {t}"
                )));
            }
            o.temperature = t;
        }
        if let Some(k) = top_k {
            o.top_k = k;
        }
        if let Some(p) = top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(InvalidArgument::new_err(format!(
                    "top_p must be in (0, 1], got {p}"
                )));
            }
            o.top_p = p;
        }
        if let Some(r) = repetition_penalty {
            if !(r > 0.0) {
                return Err(InvalidArgument::new_err(format!(
                    "repetition_penalty must be above 0, got {r}"
                )));
            }
            o.repetition_penalty = r;
        }
        // onnxruntime-genai's -1 (its default): a different seed each time.
        o.seed = match random_seed {
            Some(s) if s >= 0 => s as u64,
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        Ok(GenaiGenerator {
            gen: Generator::new(model.model.clone(), o),
        })
    }

    fn append_tokens(&mut self, py: Python<'_>, rows: Vec<Vec<u32>>) -> PyResult<()> {
        let gen = &mut self.gen;
        py.detach(|| gen.append_tokens(&rows)).map_err(err)
    }

    fn generate_next_token(&mut self, py: Python<'_>) -> PyResult<()> {
        let gen = &mut self.gen;
        py.detach(|| gen.generate_next_token()).map_err(err)
    }

    fn is_done(&self) -> bool {
        self.gen.is_done()
    }

    fn next_tokens(&self) -> Vec<u32> {
        self.gen.last_tokens()
    }

    fn sequence(&self, index: usize) -> PyResult<Vec<u32>> {
        if index >= self.gen.rows() {
            return Err(InvalidArgument::new_err(format!(
                "sequence {index} of a batch of {}",
                self.gen.rows()
            )));
        }
        Ok(self.gen.sequence(index).to_vec())
    }
}

#[pyclass(module = "kiln._kiln")]
pub struct GenaiStream {
    model: Arc<Model>,
    tokens: Vec<u32>,
    text: TextStream,
}

#[pymethods]
impl GenaiStream {
    #[new]
    fn new(model: &GenaiModel) -> Self {
        GenaiStream {
            model: model.model.clone(),
            tokens: Vec::new(),
            text: TextStream::new(),
        }
    }

    /// The text `token` adds to the ones before it ("" while a character is incomplete).
    fn decode(&mut self, token: u32) -> PyResult<String> {
        self.tokens.push(token);
        self.text.next(&self.model, &self.tokens).map_err(err)
    }
}
