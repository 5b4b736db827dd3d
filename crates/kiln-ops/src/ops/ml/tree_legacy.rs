//! TreeEnsembleClassifier and TreeEnsembleRegressor (ai.onnx.ml 1-3), the form skl2onnx and
//! onnxmltools write: nodes named by `(tree id, node id)`, each tree's root the first node of its
//! run of tree ids, leaves weighted per class or target. The outputs follow ONNX Runtime, which
//! defines what the spec leaves open: a single-column output applies only PROBIT; a binary
//! classifier whose weights all sit on one class id writes `[1 - s, s]` (all weights >= 0,
//! label threshold 0.5) or `[-s, s]` / `[σ(-s), σ(s)]` (mixed signs, threshold 0); targets no
//! reached leaf scored are 0 in the regressor.
use std::collections::HashMap;

use kiln_ir::{AttrList, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelCtx;
use crate::value::{Data, Tensor, Value};

use super::forest::{post_transform_code, rows_of, Forest, Mode, Next, Node};
use super::tree_ensemble::post_transform;
use super::{classifier_types, rows_dim, strings_attr};

/// A float list given either as `name` (floats) or `name_as_tensor`.
fn floats(ctx: &KernelCtx, name: &str) -> Result<Option<Vec<f64>>> {
    if let Some(t) = ctx.attrs.get_tensor(&format!("{name}_as_tensor")) {
        return Tensor::from_ir(t).to_f64s().map(Some);
    }
    Ok(ctx
        .attrs
        .get_floats(name)
        .map(|v| v.iter().map(|&e| e as f64).collect()))
}

fn ints(ctx: &KernelCtx, name: &str) -> Vec<i64> {
    ctx.ints_attr(name).map(|v| v.to_vec()).unwrap_or_default()
}

/// The forest, with leaves weighted by `prefix` (`class` or `target`) ids and weights.
fn forest(ctx: &KernelCtx, prefix: &str, outputs: usize) -> Result<Forest> {
    let tree = ints(ctx, "nodes_treeids");
    let id = ints(ctx, "nodes_nodeids");
    let feat = ints(ctx, "nodes_featureids");
    let modes = strings_attr(ctx, "nodes_modes").ok_or("the attribute nodes_modes is required")?;
    let vals = floats(ctx, "nodes_values")?.unwrap_or_else(|| vec![0.0; tree.len()]);
    let tn = ints(ctx, "nodes_truenodeids");
    let fnode = ints(ctx, "nodes_falsenodeids");
    let missing = ints(ctx, "nodes_missing_value_tracks_true");
    let count = tree.len();
    if [
        id.len(),
        feat.len(),
        modes.len(),
        vals.len(),
        tn.len(),
        fnode.len(),
    ]
    .iter()
    .any(|&l| l != count)
    {
        return Err("the nodes_* attributes must all have one length".into());
    }
    // Interior nodes and leaves get separate indices; (tree, node id) finds either.
    let mut at: HashMap<(i64, i64), Next> = HashMap::with_capacity(count);
    let (mut n_nodes, mut n_leaves) = (0, 0);
    for i in 0..count {
        let next = if modes[i] == "LEAF" {
            n_leaves += 1;
            Next::Leaf(n_leaves - 1)
        } else {
            n_nodes += 1;
            Next::Node(n_nodes - 1)
        };
        if at.insert((tree[i], id[i]), next).is_some() {
            return Err(format!(
                "node {} of tree {} is listed twice",
                id[i], tree[i]
            ));
        }
    }
    let find = |t: i64, n: i64| {
        at.get(&(t, n))
            .copied()
            .ok_or_else(|| format!("tree {t} has no node {n}"))
    };
    let mut forest = Forest {
        leaves: vec![Vec::new(); n_leaves],
        ..Forest::default()
    };
    for i in 0..count {
        if i == 0 || tree[i] != tree[i - 1] {
            forest.roots.push(find(tree[i], id[i])?);
        }
        let mode = match modes[i].as_str() {
            "LEAF" => continue,
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            m => {
                return Err(format!(
                    "node {} of tree {} has an unknown mode '{m}'",
                    id[i], tree[i]
                ))
            }
        };
        forest.nodes.push(Node {
            feature: usize::try_from(feat[i]).map_err(|_| "a node's feature id is negative")?,
            mode,
            threshold: vals[i],
            on_true: find(tree[i], tn[i])?,
            on_false: find(tree[i], fnode[i])?,
            missing_true: missing.get(i) == Some(&1),
            set: Vec::new(),
        });
    }
    let w_tree = ints(ctx, &format!("{prefix}_treeids"));
    let w_node = ints(ctx, &format!("{prefix}_nodeids"));
    let w_id = ints(ctx, &format!("{prefix}_ids"));
    let w = floats(ctx, &format!("{prefix}_weights"))?.unwrap_or_default();
    if [w_node.len(), w_id.len(), w.len()]
        .iter()
        .any(|&l| l != w_tree.len())
    {
        return Err(format!(
            "the {prefix}_* attributes must all have one length"
        ));
    }
    for k in 0..w_tree.len() {
        let target = usize::try_from(w_id[k])
            .ok()
            .filter(|&t| t < outputs)
            .ok_or_else(|| format!("{prefix} id {} is outside [0, {outputs})", w_id[k]))?;
        // A weight on an interior node is ignored, as ORT does.
        if let Next::Leaf(l) = find(w_tree[k], w_node[k])? {
            forest.leaves[l].push((target, w[k]));
        }
    }
    Ok(forest)
}

/// Per row: the summed (or min/max) score of each output and whether any leaf scored it.
fn scores(forest: &Forest, x: &Tensor, outputs: usize, agg: &str) -> Result<Vec<Vec<(f64, bool)>>> {
    let (n, f) = rows_of(&x.shape)?;
    forest.validate(f)?;
    let xv = x.to_f64s()?;
    let mut rows = Vec::with_capacity(n);
    for r in 0..n {
        let row = &xv[r * f..(r + 1) * f];
        let mut out = vec![(0f64, false); outputs];
        for &root in &forest.roots {
            for &(t, w) in &forest.leaves[forest.leaf(row, root)?] {
                let (s, has) = &mut out[t];
                *s = match agg {
                    "MIN" if *has => s.min(w),
                    "MAX" if *has => s.max(w),
                    "MIN" | "MAX" => w,
                    _ => *s + w,
                };
                *has = true;
            }
        }
        rows.push(out);
    }
    Ok(rows)
}

fn check_agg(agg: &str) -> Result<()> {
    match agg {
        "SUM" | "AVERAGE" | "MIN" | "MAX" => Ok(()),
        a => Err(format!(
            "aggregate_function '{a}' is not one of SUM, AVERAGE, MIN, MAX"
        )),
    }
}

/// Y: `[N, n_targets]` float.
pub fn infer_regressor(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = rows_dim(ctx);
    Ok(vec![Inferred::tensor(
        Some(DataType::F32),
        Some(vec![n, Dim::Known(ctx.int_attr("n_targets", 1))]),
    )])
}

pub fn regressor(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let targets = ctx.int_attr("n_targets", 0);
    if targets <= 0 {
        return Err("n_targets must be positive".into());
    }
    let targets = targets as usize;
    crate::ops::movement::numel(&[rows_of(&x.shape)?.0, targets])?;
    let agg = ctx.str_attr("aggregate_function").unwrap_or("SUM");
    check_agg(agg)?;
    let post = post_transform_code(ctx.str_attr("post_transform"))?;
    let base = floats(ctx, "base_values")?.unwrap_or_default();
    let forest = forest(ctx, "target", targets)?;
    let trees = forest.roots.len().max(1) as f64;
    let mut y = Vec::new();
    for row in scores(&forest, x, targets, agg)? {
        let mut out: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(t, &(s, has))| {
                let s = if agg == "AVERAGE" { s / trees } else { s };
                let b = if base.len() == targets { base[t] } else { 0.0 };
                // A single target is written even when no leaf scored it; several are 0 then.
                if has || targets == 1 {
                    s + b
                } else {
                    0.0
                }
            })
            .collect();
        // ORT applies only PROBIT to a single column.
        if targets > 1 || post == 4 {
            post_transform(&mut out, post)?;
        }
        y.extend(out.iter().map(|&v| v as f32));
    }
    let n = y.len() / targets;
    Ok(vec![Value::Tensor(Tensor::from_vec(vec![n, targets], y))])
}

/// Labels: int64 or string by the class labels given; Z: `[N, classes]` float.
pub fn infer_classifier(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    classifier_types(ctx, "classlabels_int64s", |c| {
        if c == 0 {
            Dim::Unknown
        } else {
            Dim::Known(c as i64)
        }
    })
}

/// The class labels as a tensor (int64 or string) and their count.
pub(crate) fn class_labels(ctx: &KernelCtx, ints_name: &str) -> Result<Tensor> {
    match (
        strings_attr(ctx, "classlabels_strings"),
        ctx.ints_attr(ints_name),
    ) {
        (Some(s), _) if !s.is_empty() => Ok(Tensor::new(vec![s.len()], Data::Str(s))),
        (_, Some(i)) if !i.is_empty() => Ok(Tensor::from_vec(vec![i.len()], i.to_vec())),
        _ => Err(format!("classlabels_strings or {ints_name} is required")),
    }
}

/// Picks labels by index (an index past the labels is the literal class number, as ORT's
/// binary fallbacks write 0/1 for integer labels).
pub(crate) fn pick_labels(labels: &Tensor, idx: &[usize]) -> Tensor {
    match &labels.data {
        Data::Str(s) => Tensor::new(
            vec![idx.len()],
            Data::Str(
                idx.iter()
                    .map(|&i| s.get(i).cloned().unwrap_or_else(|| i.to_string()))
                    .collect(),
            ),
        ),
        Data::I64(v) => Tensor::from_vec(
            vec![idx.len()],
            idx.iter()
                .map(|&i| v.get(i).copied().unwrap_or(i as i64))
                .collect(),
        ),
        _ => unreachable!("class labels are int64 or string"),
    }
}

pub fn classifier(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let labels = class_labels(ctx, "classlabels_int64s")?;
    let c = labels.len();
    crate::ops::movement::numel(&[rows_of(&x.shape)?.0, c])?;
    let post = post_transform_code(ctx.str_attr("post_transform"))?;
    let base = floats(ctx, "base_values")?.unwrap_or_default();
    let forest = forest(ctx, "class", c)?;
    let ids = ints(ctx, "class_ids");
    let all_positive = floats(ctx, "class_weights")?
        .unwrap_or_default()
        .iter()
        .all(|&w| w >= 0.0);
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let binary = c == 2 && distinct.len() == 1;
    let (mut ys, mut zs) = (Vec::new(), Vec::new());
    for mut row in scores(&forest, x, c, "SUM")? {
        let (label, z) = match c {
            1 => {
                let s = row[0].0 + if base.len() == 1 { base[0] } else { 0.0 };
                let mut z = vec![s];
                if post == 4 {
                    post_transform(&mut z, post)?;
                }
                // ORT's single-class label is the literal class number 1 or 0.
                (usize::from(s > 0.0), z)
            }
            2 => binary_row(&mut row, &base, binary, all_positive, post)?,
            _ => {
                for (k, b) in base.iter().enumerate().take(c) {
                    let (s, has) = &mut row[k];
                    *s = if *has { *s + b } else { *b };
                    *has = true;
                }
                // The argmax skips classes no leaf scored (the first of equal scores wins).
                let best = (0..c)
                    .filter(|&k| row[k].1)
                    .fold(None, |b: Option<usize>, k| match b {
                        Some(b) if row[b].0 >= row[k].0 => Some(b),
                        _ => Some(k),
                    })
                    .unwrap_or(0);
                let mut z: Vec<f64> = row.iter().map(|&(s, _)| s).collect();
                post_transform(&mut z, post)?;
                (best, z)
            }
        };
        ys.push(label);
        zs.extend(z.iter().map(|&v| v as f32));
    }
    let n = ys.len();
    let width = zs.len().checked_div(n).unwrap_or(c);
    Ok(vec![
        Value::Tensor(pick_labels(&labels, &ys)),
        Value::Tensor(Tensor::from_vec(vec![n, width], zs)),
    ])
}

/// The two-class row as ONNX Runtime writes it: base values, the label rule and the expansion
/// of a single score into two columns.
fn binary_row(
    row: &mut Vec<(f64, bool)>,
    base: &[f64],
    binary: bool,
    all_positive: bool,
    post: i64,
) -> Result<(usize, Vec<f64>)> {
    // 0/1: all weights >= 0; 2/3: mixed signs; None: no expansion code.
    let mut code = None;
    match base.len() {
        2 if row[1].1 => {
            row[1].0 = base[1] + row[0].0;
            row[0].0 = -row[1].0;
        }
        2 => {
            row[1].0 += base[1];
            row[0].0 += base[0];
        }
        1 => {
            row[0].0 += base[0];
            if !row[1].1 {
                row.pop();
            }
        }
        0 => {
            code = Some(3);
            if !row[1].1 {
                row.pop();
            }
        }
        _ => {}
    }
    let pos = match (row.get(1), row[0]) {
        (Some(&(s, true)), _) => s,
        (_, (s, true)) => s,
        _ => 0.0,
    };
    let label = if binary {
        let (win, c) = if all_positive {
            (pos > 0.5, if pos > 0.5 { 0 } else { 1 })
        } else {
            (pos > 0.0, if pos > 0.0 { 2 } else { 3 })
        };
        code = Some(c);
        usize::from(win)
    } else {
        usize::from(pos > 0.0)
    };
    let mut z: Vec<f64> = row.iter().map(|&(s, _)| s).collect();
    if z.len() == 2 {
        post_transform(&mut z, post)?;
        return Ok((label, z));
    }
    let s = z[0];
    let z = match (post, code) {
        (4, _) => {
            let mut p = vec![s];
            post_transform(&mut p, 4)?;
            vec![p[0], 1.0 - p[0]]
        }
        (_, Some(0 | 1)) => vec![1.0 - s, s],
        (1, Some(_)) => vec![1.0 / (1.0 + s.exp()), 1.0 / (1.0 + (-s).exp())],
        (_, Some(_)) => vec![-s, s],
        // Not ORT's binary case and no second column: the score and its negation.
        (_, None) => vec![s, -s],
    };
    Ok((label, z))
}
