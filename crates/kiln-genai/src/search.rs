//! Choosing the next token from a row of logits: greedy, or sampled after a repetition penalty,
//! temperature, top-k and top-p, from a seeded generator so that a seed repeats a run.
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct SearchOptions {
    /// Most tokens in a sequence, prompt included.
    pub max_length: usize,
    /// Fewest tokens per sequence, prompt included: EOS cannot end one sooner.
    pub min_length: usize,
    pub do_sample: bool,
    pub temperature: f32,
    /// 0: no cut.
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            max_length: 1024,
            min_length: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SearchOptions {
    /// The config's `search` section over the defaults, `max_length` at most the context.
    pub fn from_config(v: Option<&Value>, context: usize) -> SearchOptions {
        let mut o = SearchOptions {
            max_length: context,
            ..Default::default()
        };
        let Some(v) = v else { return o };
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        if let Some(x) = f("max_length") {
            o.max_length = (x as usize).min(context);
        }
        if let Some(x) = f("min_length") {
            o.min_length = x as usize;
        }
        if let Some(x) = v.get("do_sample").and_then(Value::as_bool) {
            o.do_sample = x;
        }
        if let Some(x) = f("temperature") {
            o.temperature = x as f32;
        }
        if let Some(x) = f("top_k") {
            o.top_k = x as usize;
        }
        if let Some(x) = f("top_p") {
            o.top_p = x as f32;
        }
        if let Some(x) = f("repetition_penalty") {
            o.repetition_penalty = x as f32;
        }
        o
    }
}

/// xoshiro256** seeded through splitmix64: small, fast and the same on every machine.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The next token of a sequence from its logits; `seen` are the sequence's tokens so far (for
/// the repetition penalty).
pub fn choose(logits: &[f32], seen: &[u32], o: &SearchOptions, rng: &mut Rng) -> u32 {
    let mut l = logits.to_vec();
    if o.repetition_penalty != 1.0 && o.repetition_penalty > 0.0 {
        // As Hugging Face does: positive logits divided by the penalty, negative multiplied.
        let mut done = vec![false; l.len()];
        for &t in seen {
            let t = t as usize;
            if t < l.len() && !done[t] {
                done[t] = true;
                l[t] = if l[t] > 0.0 {
                    l[t] / o.repetition_penalty
                } else {
                    l[t] * o.repetition_penalty
                };
            }
        }
    }
    if !o.do_sample || o.top_k == 1 {
        return argmax(&l);
    }
    let temp = if o.temperature > 0.0 {
        o.temperature
    } else {
        1.0
    };
    // Candidates by descending logit, cut to top-k.
    let mut idx: Vec<usize> = (0..l.len()).collect();
    idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
    if o.top_k > 0 {
        idx.truncate(o.top_k.max(1));
    }
    let m = l[idx[0]];
    let mut p: Vec<f64> = idx
        .iter()
        .map(|&i| (((l[i] - m) / temp) as f64).exp())
        .collect();
    let sum: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    // Top-p: the smallest prefix whose mass reaches p.
    if o.top_p < 1.0 && o.top_p > 0.0 {
        let mut acc = 0.0;
        let mut keep = p.len();
        for (i, &x) in p.iter().enumerate() {
            acc += x;
            if acc >= o.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        p.truncate(keep);
        idx.truncate(keep);
        let s: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= s);
    }
    let u = rng.uniform();
    let mut acc = 0.0;
    for (i, &x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return idx[i] as u32;
        }
    }
    idx[idx.len() - 1] as u32
}

/// The first index of the largest value.
pub fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_penalty_and_sampling() {
        let l = [0.5f32, 2.0, 1.9, -1.0];
        let mut rng = Rng::new(1);
        let greedy = SearchOptions::default();
        assert_eq!(choose(&l, &[], &greedy, &mut rng), 1);
        // Penalized, token 1 (2.0 / 1.5 = 1.33) falls below token 2.
        let pen = SearchOptions {
            repetition_penalty: 1.5,
            ..greedy.clone()
        };
        assert_eq!(choose(&l, &[1], &pen, &mut rng), 2);
        // top_k 2 only ever gives tokens 1 and 2; top_p 0.01 only the best.
        let k2 = SearchOptions {
            do_sample: true,
            top_k: 2,
            ..greedy.clone()
        };
        let mut counts = [0; 4];
        for _ in 0..2000 {
            counts[choose(&l, &[], &k2, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[0] + counts[3], 0);
        assert!(counts[1] > 900 && counts[2] > 800, "{counts:?}");
        let p = SearchOptions {
            do_sample: true,
            top_k: 0,
            top_p: 0.01,
            ..greedy
        };
        assert!((0..100).all(|_| choose(&l, &[], &p, &mut rng) == 1));
        // The same seed repeats a run.
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..50).all(|_| choose(&l, &[], &k2, &mut a) == choose(&l, &[], &k2, &mut b)));
    }
}
