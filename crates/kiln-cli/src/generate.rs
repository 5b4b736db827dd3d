//! `kiln generate`: text from a decoder model folder (onnxruntime-genai's layout), streamed as
//! it is made, then the prefill and decode speeds.
use std::io::Write;

use anyhow::{bail, Context};
use kiln_genai::{Generator, Model, SessionOptions, TextStream};

use crate::args::GenerateArgs;

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let opts = SessionOptions {
        threads: a.threads,
        ..Default::default()
    };
    let model =
        Model::load(&a.model_dir, opts).with_context(|| format!("{}", a.model_dir.display()))?;
    let mut search = model.config.search.clone();
    if let Some(m) = a.max_length {
        search.max_length = m;
    }
    if let Some(m) = a.min_length {
        search.min_length = m;
    }
    let sampled =
        a.temperature.is_some() || a.top_k.is_some() || a.top_p.is_some() || a.seed.is_some();
    if sampled {
        search.do_sample = true;
    }
    if a.greedy {
        search.do_sample = false;
    }
    if let Some(t) = a.temperature {
        if !(t > 0.0) {
            bail!("--temperature must be above 0, got {t}");
        }
        search.temperature = t;
    }
    if let Some(k) = a.top_k {
        search.top_k = k;
    }
    if let Some(p) = a.top_p {
        if !(p > 0.0 && p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {p}");
        }
        search.top_p = p;
    }
    if let Some(r) = a.repetition_penalty {
        if !(r > 0.0) {
            bail!("--repetition-penalty must be above 0, got {r}");
        }
        search.repetition_penalty = r;
    }
    if let Some(s) = a.seed {
        search.seed = s;
    }
    let given = if a.prompt.is_empty() {
        vec![String::new()]
    } else {
        a.prompt.clone()
    };
    let prompts = given
        .iter()
        .map(|p| {
            // An empty prompt starts from the start token alone.
            model
                .encode(p)
                .map(|ids| match (ids.is_empty(), model.config.bos) {
                    (true, Some(b)) => vec![b],
                    _ => ids,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if a.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    for rep in 1..a.repeat {
        let mut w = Generator::new(&model, search.clone());
        w.append_tokens(&prompts)?;
        while !w.is_done() {
            w.generate_next_token()?;
        }
        eprintln!("run {rep}: {}", speeds(&w.timing));
    }
    let mut g = Generator::new(&model, search);
    g.append_tokens(&prompts)?;
    // One sequence streams its text as it comes; a batch prints each sequence at the end.
    let stream = prompts.len() == 1 && !a.ids && !a.json;
    let mut text = TextStream::new();
    let mut out = std::io::stdout().lock();
    while !g.is_done() {
        g.generate_next_token()?;
        if stream {
            let piece = text.next(&model, g.generated(0))?;
            if !piece.is_empty() {
                out.write_all(piece.as_bytes())?;
                out.flush()?;
            }
        }
    }
    let t = g.timing;
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    if a.json {
        let rows = (0..prompts.len())
            .map(|r| Ok((g.generated(r).to_vec(), model.decode(g.generated(r))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (tokens, text) = if rows.len() == 1 {
            (serde_json::json!(rows[0].0), serde_json::json!(rows[0].1))
        } else {
            let (t, x): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            (serde_json::json!(t), serde_json::json!(x))
        };
        let v = serde_json::json!({
            "tokens": tokens,
            "text": text,
            "prefill_tokens": t.prefill_tokens,
            "decode_tokens": t.decode_tokens,
            "prefill_tokens_per_s": rate(t.prefill_tokens, t.prefill_s),
            "decode_tokens_per_s": rate(t.decode_tokens, t.decode_s),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if stream {
        writeln!(out)?;
        out.flush()?;
    } else {
        for r in 0..prompts.len() {
            if a.ids {
                let ids: Vec<String> = g.generated(r).iter().map(u32::to_string).collect();
                writeln!(out, "{}", ids.join(" "))?;
            } else {
                writeln!(out, "{}", model.decode(g.generated(r))?)?;
            }
        }
        out.flush()?;
    }
    eprintln!("{}", speeds(&t));
    Ok(())
}

/// The speeds line: `prefill: N tokens at X tokens/s; decode: M tokens at Y tokens/s`.
fn speeds(t: &kiln_genai::Timing) -> String {
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    format!(
        "prefill: {} tokens at {:.0} tokens/s; decode: {} tokens at {:.1} tokens/s",
        t.prefill_tokens,
        rate(t.prefill_tokens, t.prefill_s),
        t.decode_tokens,
        rate(t.decode_tokens, t.decode_s)
    )
}
