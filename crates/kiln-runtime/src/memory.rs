//! Memory limits. Before a run allocates anything, the sizes of its intermediates are inferred
//! from the fed shapes, their lifetimes are walked in run order, and a run whose intermediates
//! would at some point exceed the limit is refused, naming the node whose output crosses it.
//! The check is cached per set of input shapes. Kernel scratch space (im2col buffers, packed
//! panels) and values whose size depends on data (NonZero) are not counted.
use std::collections::HashMap;
use std::sync::Mutex;

use kiln_ir::{Dim, Model, NodeId, ValueId};

/// Bytes of memory the system could give this process now (`MemAvailable`), if known.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Parses `BYTES` with an optional K/M/G/T suffix (powers of 1024; `B` and `iB` allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (BYTES with an optional K, M, G or T)"))?;
    let bytes = v * mul as f64;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("'{s}' is not a size of at least one byte"));
    }
    Ok(bytes as u64)
}

/// A size for messages: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The limit and the verdicts already reached, per set of input shapes.
pub(crate) struct Budget {
    pub limit: u64,
    seen: Mutex<HashMap<Vec<Vec<usize>>, Result<(), String>>>,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a run on inputs of these shapes (by input value, in the session's input order;
    /// the flag says whether the input counts against the limit).
    pub fn check(
        &self,
        model: &Model,
        order: &[NodeId],
        fed: &[(ValueId, Vec<usize>, bool)],
    ) -> Result<(), String> {
        let key: Vec<Vec<usize>> = fed.iter().map(|(_, s, _)| s.clone()).collect();
        if let Some(v) = self
            .seen
            .lock()
            .map_err(|_| "memory check poisoned")?
            .get(&key)
        {
            return v.clone();
        }
        let verdict = self.estimate(model, order, fed);
        if let Ok(mut m) = self.seen.lock() {
            // Shapes that change every run (a growing sequence) would fill the cache: start over.
            if m.len() >= 64 {
                m.clear();
            }
            m.insert(key, verdict.clone());
        }
        verdict
    }

    fn estimate(
        &self,
        model: &Model,
        order: &[NodeId],
        fed: &[(ValueId, Vec<usize>, bool)],
    ) -> Result<(), String> {
        let mut m = model.clone();
        for (v, shape, _) in fed {
            let name = m.graph.value(*v).name.clone();
            let dims = shape.iter().map(|&d| Dim::Known(d as i64)).collect();
            // An input the declared shape cannot take is reported by the input check.
            if kiln_ops::infer::set_input_shape(&mut m.graph, &name, dims).is_err() {
                return Ok(());
            }
        }
        // A node that cannot be inferred fails in its kernel, with that kernel's message.
        if kiln_ops::infer_shapes(&mut m).is_err() {
            return Ok(());
        }
        let g = &m.graph;
        let bytes = |v: ValueId| -> Option<u64> {
            let ty = g.value(v).ty.as_ref()?;
            let n = ty.shape()?.iter().try_fold(1u64, |a, d| {
                d.known()
                    .and_then(|k| u64::try_from(k).ok())
                    .and_then(|k| a.checked_mul(k))
            })?;
            let bits = ty.dtype()?.bits().unwrap_or(64) as u64;
            Some(n.saturating_mul(bits).div_ceil(8))
        };
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let last_use = |v: ValueId| -> usize {
            if g.is_graph_output(v) {
                return usize::MAX;
            }
            g.value(v)
                .consumers()
                .iter()
                .filter_map(|u| pos.get(&u.node).copied())
                .max()
                .unwrap_or(0)
        };
        // The fed inputs stay alive for the whole run.
        let inputs: u64 = fed
            .iter()
            .filter(|(_, _, counted)| *counted)
            .filter_map(|(v, _, _)| bytes(*v))
            .sum();
        let mut alive: Vec<(usize, u64)> = Vec::new();
        let mut total = inputs;
        for (i, &n) in order.iter().enumerate() {
            // Scratch the kernel needs while it runs, on top of what is alive.
            let scratch = workspace(g, n);
            for &v in g.node(n).outputs().iter().flatten() {
                let Some(b) = bytes(v) else { continue };
                total = total.saturating_add(b);
                if total.saturating_add(scratch) > self.limit {
                    let ty = g
                        .value(v)
                        .ty
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    let shape = g
                        .value(v)
                        .ty
                        .as_ref()
                        .and_then(|t| t.shape())
                        .map(|s| {
                            s.iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join("x")
                        })
                        .unwrap_or_default();
                    return Err(format!(
                        "{}: its output '{}' ({ty} [{shape}], {}) would bring this run to {} \
                         (inputs {}, kernel scratch {}), over the memory limit of {}",
                        g.describe(n),
                        g.value(v).name,
                        human(b),
                        human(total.saturating_add(scratch)),
                        human(inputs),
                        human(scratch),
                        human(self.limit)
                    ));
                }
                alive.push((last_use(v).max(i), b));
            }
            alive.retain(|&(last, b)| {
                if last <= i {
                    total -= b;
                    false
                } else {
                    true
                }
            });
        }
        Ok(())
    }
}

/// The scratch memory a node's kernel allocates while it runs, roughly: a convolution copies
/// its input padded and split by stride phase, and packs im2col panels from that copy; measured
/// on YOLOv8n at 12800², a run's resident memory beyond its live tensors is about three times
/// the largest convolution input.
fn workspace(g: &kiln_ir::Graph, n: NodeId) -> u64 {
    let node = g.node(n);
    if !matches!(node.op_type.as_str(), "Conv" | "FusedConv" | "ConvInteger") {
        return 0;
    }
    let Some(Some(x)) = node.inputs().first() else {
        return 0;
    };
    let Some(shape) = g.value(*x).ty.as_ref().and_then(|t| t.shape()) else {
        return 0;
    };
    let n: Option<u64> = shape.iter().try_fold(1u64, |a, d| {
        d.known()
            .and_then(|k| u64::try_from(k).ok())
            .and_then(|k| a.checked_mul(k))
    });
    n.map_or(0, |n| n.saturating_mul(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("3MiB").unwrap(), 3 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
