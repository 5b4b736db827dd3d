//! TreeEnsemble (ai.onnx.ml 5): sums (or averages, or takes the min/max of) the leaf weights
//! that each tree's walk reaches per target, then applies the post transform. Interior nodes
//! compare one feature with `<=`, `<`, `>=`, `>`, `==`, `!=` or set membership; NaN features
//! take the branch `nodes_missing_value_tracks_true` names.
//!
//! `post_transform` codes follow ONNX Runtime, the one runtime that applies them (ONNX's
//! reference ignores the attribute): 1 is LOGISTIC and 2 SOFTMAX, the reverse of the spec's
//! table, so models validated on ORT keep their outputs.
use kiln_ir::{AttrList, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx};
use crate::value::{Tensor, Value};

use super::forest::{rows_of, Forest, Mode, Next, Node};

/// Y: `[N, n_targets]` in X's type.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = ctx
        .shape(0)
        .and_then(|s| s.first().cloned())
        .unwrap_or(Dim::Unknown);
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(vec![n, Dim::Known(ctx.int_attr("n_targets", 0))]),
    )])
}

fn floats_tensor(ctx: &KernelCtx, name: &str) -> Result<Vec<f64>> {
    match ctx.attrs.get_tensor(name) {
        Some(t) => Tensor::from_ir(t).to_f64s(),
        None => Err(format!("the tensor attribute '{name}' is required")),
    }
}

fn ints(ctx: &KernelCtx, name: &str) -> Result<Vec<i64>> {
    ctx.ints_attr(name)
        .map(|v| v.to_vec())
        .ok_or_else(|| format!("the attribute '{name}' is required"))
}

/// Applies a post transform to one row of scores (codes as ONNX Runtime reads them: 0 NONE,
/// 1 LOGISTIC, 2 SOFTMAX, 3 SOFTMAX_ZERO, 4 PROBIT).
pub(crate) fn post_transform(row: &mut [f64], which: i64) -> Result<()> {
    match which {
        0 => {}
        2 | 3 => {
            // SOFTMAX_ZERO leaves zero scores at zero.
            let zero = which == 3;
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0;
            for v in row.iter_mut() {
                if zero && *v == 0.0 {
                    continue;
                }
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                if !(zero && *v == 0.0) && sum > 0.0 {
                    *v /= sum;
                }
            }
        }
        1 => {
            for v in row.iter_mut() {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
        4 => {
            for v in row.iter_mut() {
                *v = std::f64::consts::SQRT_2 * erf_inv(2.0 * *v - 1.0);
            }
        }
        p => return Err(format!("post_transform {p} is not one of 0..4")),
    }
    Ok(())
}

/// The inverse error function (Giles' single-precision approximation, refined by two Newton
/// steps), for PROBIT.
fn erf_inv(x: f64) -> f64 {
    if x <= -1.0 {
        return f64::NEG_INFINITY;
    }
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let mut p;
    if w < 5.0 {
        let w = w - 2.5;
        p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
    } else {
        let w = w.sqrt() - 3.0;
        p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
    }
    let mut y = p * x;
    for _ in 0..2 {
        let err = libm::erf(y) - x;
        y -= err / (2.0 / std::f64::consts::PI.sqrt() * (-y * y).exp());
    }
    y
}

/// The forest of the ml-5 attributes: flat node arrays, children either node or leaf indices.
fn forest_of(ctx: &KernelCtx, n_targets: usize) -> Result<Forest> {
    let splits = floats_tensor(ctx, "nodes_splits")?;
    let feats = ints(ctx, "nodes_featureids")?;
    let modes = match ctx.attrs.get_tensor("nodes_modes") {
        Some(t) => Tensor::from_ir(t).to_i64s()?,
        None => return Err("the tensor attribute 'nodes_modes' is required".into()),
    };
    let tn = ints(ctx, "nodes_truenodeids")?;
    let fnode = ints(ctx, "nodes_falsenodeids")?;
    let tl = ints(ctx, "nodes_trueleafs")?;
    let fl = ints(ctx, "nodes_falseleafs")?;
    let targets = ints(ctx, "leaf_targetids")?;
    let weights = floats_tensor(ctx, "leaf_weights")?;
    let roots = ints(ctx, "tree_roots")?;
    let missing = ctx.ints_attr("nodes_missing_value_tracks_true");
    let count = splits.len();
    if [
        feats.len(),
        modes.len(),
        tn.len(),
        fnode.len(),
        tl.len(),
        fl.len(),
    ]
    .iter()
    .any(|&l| l != count)
    {
        return Err("the nodes_* attributes must all have one length".into());
    }
    if targets.len() != weights.len() {
        return Err("leaf_targetids and leaf_weights differ in length".into());
    }
    if targets.iter().any(|&t| t < 0 || t as usize >= n_targets) {
        return Err(format!("a leaf target is outside [0, {n_targets})"));
    }
    // Membership sets, in the order the MEMBER nodes appear, NaN-delimited.
    let members = if modes.contains(&6) {
        floats_tensor(ctx, "membership_values")?
    } else {
        Vec::new()
    };
    let mut groups = members.split(|v| v.is_nan());
    let link = |leaf: i64, id: i64| -> Result<Next> {
        let id = usize::try_from(id).map_err(|_| format!("a node points at {id}"))?;
        Ok(if leaf != 0 {
            Next::Leaf(id)
        } else {
            Next::Node(id)
        })
    };
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        let mode = match modes[i] {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => Mode::Member,
            m => return Err(format!("node {i} has an unknown mode {m}")),
        };
        let set = if mode == Mode::Member {
            groups
                .next()
                .ok_or("membership_values has too few sets")?
                .to_vec()
        } else {
            Vec::new()
        };
        nodes.push(Node {
            feature: usize::try_from(feats[i]).map_err(|_| "a node's feature id is negative")?,
            mode,
            threshold: splits[i],
            on_true: link(tl[i], tn[i])?,
            on_false: link(fl[i], fnode[i])?,
            missing_true: missing.is_some_and(|m| m.get(i) == Some(&1)),
            set,
        });
    }
    let roots = roots
        .iter()
        .map(|&r| link(0, r))
        .collect::<Result<Vec<_>>>()?;
    Ok(Forest {
        nodes,
        leaves: targets
            .iter()
            .zip(&weights)
            .map(|(&t, &w)| vec![(t as usize, w)])
            .collect(),
        roots,
    })
}

pub fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (n, f) = rows_of(&x.shape)?;
    let n_targets = ctx.int_attr("n_targets", 0).max(0) as usize;
    let agg = ctx.int_attr("aggregate_function", 1);
    let post = ctx.int_attr("post_transform", 0);
    crate::ops::movement::numel(&[n, n_targets])?;
    let forest = forest_of(ctx, n_targets)?;
    forest.validate(f)?;
    let xv = x.to_f64s()?;
    let mut y = vec![0f64; n * n_targets];
    for r in 0..n {
        let row = &xv[r * f..(r + 1) * f];
        let out = &mut y[r * n_targets..(r + 1) * n_targets];
        let mut hits = vec![0usize; n_targets];
        for &root in &forest.roots {
            let leaf = forest.leaf(row, root)?;
            for &(t, w) in &forest.leaves[leaf] {
                out[t] = match (agg, hits[t]) {
                    (2, 0) | (3, 0) => w,
                    (2, _) => out[t].min(w),
                    (3, _) => out[t].max(w),
                    (0 | 1, _) => out[t] + w,
                    (a, _) => return Err(format!("aggregate_function {a} is not one of 0..3")),
                };
                hits[t] += 1;
            }
        }
        if agg == 0 && !forest.roots.is_empty() {
            for v in out.iter_mut() {
                *v /= forest.roots.len() as f64;
            }
        }
        // A single target takes only PROBIT, as ORT (which runs this op through its legacy
        // regressor) does.
        if n_targets > 1 || post == 4 {
            post_transform(out, post)?;
        }
    }
    let dt = match x.dtype() {
        DataType::F64 => DataType::F64,
        d if d.is_float() => d,
        _ => DataType::F32,
    };
    one(super::super::cast::from_f64s_saturating(
        y,
        vec![n, n_targets],
        dt,
    )?)
}
