//! TfIdfVectorizer: counts the pool's n-grams (with up to `max_skip_count` skipped tokens
//! between items) in each row of a 1-D or 2-D integer or string input, weighted by `mode`.
//! Unigrams are counted once, not once per skip distance, as ONNX's reference and ONNX Runtime
//! count them; weights are indexed by output coordinate.
use std::collections::HashMap;

use kiln_ir::{AttrValue, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "TfIdfVectorizer") => Some(run),
        _ => None,
    }
}

/// Y: float, `[max(ngram_indexes) + 1]` or `[N, max + 1]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let width = ctx
        .ints_attr("ngram_indexes")
        .and_then(|v| v.iter().max().map(|m| Dim::Known(m + 1)));
    let shape = match (ctx.shape(0), width) {
        (Some(s), Some(w)) if s.len() == 2 => Some(vec![s[0].clone(), w]),
        (Some(s), Some(w)) if s.len() <= 1 => Some(vec![w]),
        _ => None,
    };
    Ok(vec![Inferred::tensor(Some(DataType::F32), shape)])
}

/// A token, whatever the input type.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Tok {
    Int(i64),
    Str(String),
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let toks: Vec<Tok> = match &x.data {
        Data::Str(v) => v.iter().cloned().map(Tok::Str).collect(),
        _ => x.to_i64s()?.into_iter().map(Tok::Int).collect(),
    };
    let (rows, cols, two_d) = match x.shape.as_slice() {
        [] => (1, 1, false),
        [c] => (1, *c, false),
        [n, c] => (*n, *c, true),
        s => return Err(format!("X must be [C] or [N, C], got {s:?}")),
    };
    let pool: Vec<Tok> = match (ctx.attr("pool_int64s"), ctx.attr("pool_strings")) {
        (Some(AttrValue::Ints(v)), None) => v.iter().map(|&i| Tok::Int(i)).collect(),
        (None, Some(AttrValue::Strings(v))) => v
            .iter()
            .map(|b| Tok::Str(String::from_utf8_lossy(b).into_owned()))
            .collect(),
        _ => return Err("exactly one of pool_int64s and pool_strings must be given".into()),
    };
    let counts = ctx
        .ints_attr("ngram_counts")
        .ok_or("ngram_counts is required")?;
    let indexes = ctx
        .ints_attr("ngram_indexes")
        .ok_or("ngram_indexes is required")?;
    let min_n = ctx.int_attr("min_gram_length", 1).max(1) as usize;
    let max_n = ctx.int_attr("max_gram_length", 1).max(1) as usize;
    let max_skip = ctx.int_attr("max_skip_count", 0).max(0) as usize;
    if min_n > max_n {
        return Err(format!(
            "min_gram_length {min_n} exceeds max_gram_length {max_n}"
        ));
    }
    // Pool n-gram -> its index among all n-grams (the order of ngram_indexes).
    let mut ids: HashMap<Vec<Tok>, usize> = HashMap::new();
    let mut next = 0usize;
    for (g, &start) in counts.iter().enumerate() {
        let n = g + 1;
        let end = counts.get(g + 1).map_or(pool.len() as i64, |&e| e);
        if start < 0 || end < start || end as usize > pool.len() || (end - start) as usize % n != 0
        {
            return Err(format!(
                "ngram_counts {counts:?} do not split a pool of {}",
                pool.len()
            ));
        }
        for chunk in pool[start as usize..end as usize].chunks(n) {
            ids.insert(chunk.to_vec(), next);
            next += 1;
        }
    }
    if indexes.len() < next {
        return Err(format!(
            "ngram_indexes has {} entries for {next} n-grams",
            indexes.len()
        ));
    }
    let width = indexes.iter().max().map_or(0, |&m| m + 1).max(0) as usize;
    if indexes.iter().any(|&i| i < 0) {
        return Err("ngram_indexes must be non-negative".into());
    }
    let mut freq = vec![0i64; rows * width];
    for r in 0..rows {
        let row = &toks[r * cols..(r + 1) * cols];
        let mut start_n = min_n;
        for dist in 1..=max_skip + 1 {
            for s in 0..row.len() {
                for n in start_n..=max_n {
                    let last = s + (n - 1) * dist;
                    if last >= row.len() {
                        break;
                    }
                    let gram: Vec<Tok> = (0..n).map(|k| row[s + k * dist].clone()).collect();
                    if let Some(&id) = ids.get(&gram) {
                        freq[r * width + indexes[id] as usize] += 1;
                    }
                }
            }
            if start_n == 1 {
                start_n = 2;
                if start_n > max_n {
                    break;
                }
            }
        }
    }
    let weights: Vec<f32> = match ctx.attr("weights") {
        Some(AttrValue::Floats(w)) => w.clone(),
        _ => Vec::new(),
    };
    let w = |i: usize| weights.get(i).copied().unwrap_or(1.0);
    let y: Vec<f32> = match ctx.str_attr("mode").unwrap_or("TF") {
        "TF" => freq.iter().map(|&f| f as f32).collect(),
        "IDF" => freq
            .iter()
            .enumerate()
            .map(|(p, &f)| if f > 0 { w(p % width.max(1)) } else { 0.0 })
            .collect(),
        "TFIDF" => freq
            .iter()
            .enumerate()
            .map(|(p, &f)| w(p % width.max(1)) * f as f32)
            .collect(),
        m => return Err(format!("mode must be TF, IDF or TFIDF, got '{m}'")),
    };
    let shape = if two_d {
        vec![rows, width]
    } else {
        vec![width]
    };
    one(Tensor::from_vec(shape, y))
}
