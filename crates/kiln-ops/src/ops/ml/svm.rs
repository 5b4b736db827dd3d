//! SVMClassifier and SVMRegressor: libsvm's models as skl2onnx writes them (support vectors,
//! dual coefficients, `rho`, Platt's `prob_a`/`prob_b`) and liblinear's (no support vectors).
//! Semantics follow ONNX Runtime: one-vs-one votes pick the label (even when probabilities are
//! written; the lowest class wins ties); probabilities come from pairwise coupling; a binary
//! model without probabilities writes `[-d, d]`; the linear form adds `rho[0]` to every class.
use kiln_ir::{AttrList, AttrValue, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelCtx;
use crate::value::{Tensor, Value};

use super::forest::{post_transform_code, rows_of};
use super::tree_ensemble::post_transform;
use super::tree_legacy::{class_labels, pick_labels};
use super::{classifier_types, rows_dim};

#[derive(Clone, Copy)]
enum Kernel {
    Linear,
    Poly { gamma: f64, coef0: f64, degree: f64 },
    Rbf { gamma: f64 },
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    fn from(ctx: &KernelCtx) -> Result<Kernel> {
        let p = ctx.attrs.get_floats("kernel_params").unwrap_or(&[]);
        if !p.is_empty() && p.len() < 3 {
            return Err("kernel_params must be [gamma, coef0, degree]".into());
        }
        let (gamma, coef0, degree) = match p {
            [g, c, d, ..] => (*g as f64, *c as f64, *d as f64),
            _ => (0.0, 0.0, 0.0),
        };
        Ok(match ctx.str_attr("kernel_type").unwrap_or("LINEAR") {
            "LINEAR" => Kernel::Linear,
            "POLY" => Kernel::Poly {
                gamma,
                coef0,
                degree,
            },
            "RBF" => Kernel::Rbf { gamma },
            "SIGMOID" => Kernel::Sigmoid { gamma, coef0 },
            k => {
                return Err(format!(
                    "kernel_type '{k}' is not LINEAR, POLY, RBF or SIGMOID"
                ))
            }
        })
    }

    fn eval(self, x: &[f64], sv: &[f32]) -> f64 {
        let dot = || x.iter().zip(sv).map(|(&a, &b)| a * b as f64).sum::<f64>();
        match self {
            Kernel::Linear => dot(),
            Kernel::Poly {
                gamma,
                coef0,
                degree,
            } => (gamma * dot() + coef0).powf(degree),
            Kernel::Rbf { gamma } => {
                let d: f64 = x
                    .iter()
                    .zip(sv)
                    .map(|(&a, &b)| (a - b as f64).powi(2))
                    .sum();
                (-gamma * d).exp()
            }
            Kernel::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }
}

/// `(rows, features)` of X, which must have at least one feature.
fn features(x: &Tensor) -> Result<(usize, usize)> {
    let (n, f) = rows_of(&x.shape)?;
    if f == 0 {
        return Err("X has no features".into());
    }
    Ok((n, f))
}

fn floats<'a>(ctx: &'a KernelCtx, name: &str) -> &'a [f32] {
    ctx.attrs.get_floats(name).unwrap_or(&[])
}

pub fn infer_regressor(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::F32),
        Some(vec![rows_dim(ctx), Dim::Known(1)]),
    )])
}

/// `Σ coef·K(x, sv) + rho[0]` (or `⟨x, coef⟩ + rho[0]` without support vectors); `one_class`
/// gives ±1. ORT applies no post transform here.
pub fn regressor(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (n, f) = features(x)?;
    let kernel = Kernel::from(ctx)?;
    let sv = floats(ctx, "support_vectors");
    let coef = floats(ctx, "coefficients");
    let rho = *floats(ctx, "rho")
        .first()
        .ok_or("the attribute rho is required")? as f64;
    let supports = ctx.int_attr("n_supports", 0).max(0) as usize;
    let one_class = ctx.int_attr("one_class", 0) != 0;
    if supports > 0 && (Some(sv.len()) != supports.checked_mul(f) || coef.len() < supports) {
        return Err(format!(
            "{} support-vector values and {} coefficients for {supports} vectors of {f} features",
            sv.len(),
            coef.len()
        ));
    }
    if supports == 0 && coef.len() != f {
        return Err(format!("{} coefficients for {f} features", coef.len()));
    }
    let xv = x.to_f64s()?;
    let y: Vec<f32> = xv
        .chunks(f.max(1))
        .take(n)
        .map(|row| {
            let v = if supports > 0 {
                (0..supports)
                    .map(|k| coef[k] as f64 * kernel.eval(row, &sv[k * f..(k + 1) * f]))
                    .sum::<f64>()
            } else {
                Kernel::Linear.eval(row, coef)
            } + rho;
            let v = if one_class {
                if v > 0.0 {
                    1.0
                } else {
                    -1.0
                }
            } else {
                v
            };
            v as f32
        })
        .collect();
    Ok(vec![Value::Tensor(Tensor::from_vec(vec![n, 1], y))])
}

pub fn infer_classifier(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let svc = matches!(ctx.attr("vectors_per_class"), Some(AttrValue::Ints(v)) if v.iter().any(|&k| k > 0));
    let proba = matches!(ctx.attr("prob_a"), Some(AttrValue::Floats(v)) if !v.is_empty());
    classifier_types(ctx, "classlabels_ints", |c| {
        if c == 0 {
            Dim::Unknown
        } else if svc && !proba && c > 2 {
            Dim::Known((c * (c - 1) / 2) as i64)
        } else {
            Dim::Known(c as i64)
        }
    })
}

pub fn classifier(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (n, f) = features(x)?;
    let labels = class_labels(ctx, "classlabels_ints")?;
    let c = labels.len();
    let kernel = Kernel::from(ctx)?;
    let post = post_transform_code(ctx.str_attr("post_transform"))?;
    let per_class: Vec<usize> = ctx
        .ints_attr("vectors_per_class")
        .unwrap_or(&[])
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| "vectors_per_class has a negative entry"))
        .collect::<std::result::Result<_, _>>()?;
    let v = per_class
        .iter()
        .try_fold(0usize, |a, &k| a.checked_add(k))
        .ok_or("vectors_per_class adds up to too many vectors")?;
    let sv = floats(ctx, "support_vectors");
    let coef = floats(ctx, "coefficients");
    let rho = floats(ctx, "rho");
    let (pa, pb) = (floats(ctx, "prob_a"), floats(ctx, "prob_b"));
    if pa.len() != pb.len() {
        return Err("prob_a and prob_b differ in length".into());
    }
    if rho.is_empty() {
        return Err("the attribute rho is required".into());
    }
    let xv = x.to_f64s()?;
    let rows = xv.chunks(f).take(n);
    let (mut ys, mut zs) = (Vec::with_capacity(n), Vec::new());
    if v == 0 {
        // liblinear: one coefficient row per class, rho[0] added to each.
        if Some(coef.len()) != c.checked_mul(f) {
            return Err(format!(
                "{} coefficients for {c} classes of {f} features",
                coef.len()
            ));
        }
        let all_positive = coef.iter().all(|&w| w >= 0.0);
        for row in rows {
            let mut s: Vec<f64> = (0..c)
                .map(|k| Kernel::Linear.eval(row, &coef[k * f..(k + 1) * f]) + rho[0] as f64)
                .collect();
            let best = (0..c).fold(0, |b, k| if s[k] > s[b] { k } else { b });
            let top = s.get(best).copied().unwrap_or(0.0);
            let label = if c == 2
                && pa.is_empty()
                && ((all_positive && top >= 0.5) || (!all_positive && top > 0.0))
            {
                1
            } else {
                best
            };
            ys.push(label);
            if c >= 2 {
                post_transform(&mut s, post)?;
            }
            zs.extend(s);
        }
        return finish(&labels, ys, zs, n);
    }
    let (want_sv, want_coef) = (v.checked_mul(f), (c - 1).checked_mul(v));
    if per_class.len() != c || Some(sv.len()) != want_sv || Some(coef.len()) != want_coef {
        return Err(format!(
            "an SVC of {c} classes and {v} support vectors of {f} features needs vectors_per_class \
             of {c} entries, support_vectors of {v}x{f} and coefficients of {}x{v} (got {}, {} and {})",
            c - 1,
            per_class.len(),
            sv.len(),
            coef.len()
        ));
    }
    let pairs = c * (c - 1) / 2;
    if rho.len() < pairs || (!pa.is_empty() && pa.len() < pairs) {
        return Err(format!(
            "rho and prob_a/prob_b need one value per class pair ({pairs})"
        ));
    }
    let start: Vec<usize> = per_class
        .iter()
        .scan(0, |a, &k| {
            let s = *a;
            *a += k;
            Some(s)
        })
        .collect();
    for row in rows {
        let k: Vec<f64> = (0..v)
            .map(|m| kernel.eval(row, &sv[m * f..(m + 1) * f]))
            .collect();
        let mut votes = vec![0usize; c];
        let mut d = Vec::with_capacity(pairs);
        let mut p = 0;
        for i in 0..c {
            for j in i + 1..c {
                let si = start[i]..start[i] + per_class[i];
                let sj = start[j]..start[j] + per_class[j];
                let mut s = rho[p] as f64;
                s += si.map(|m| coef[(j - 1) * v + m] as f64 * k[m]).sum::<f64>();
                s += sj.map(|m| coef[i * v + m] as f64 * k[m]).sum::<f64>();
                if s > 0.0 {
                    votes[i] += 1;
                } else {
                    votes[j] += 1;
                }
                d.push(s);
                p += 1;
            }
        }
        let best = (0..c).fold(0, |b, k| if votes[k] > votes[b] { k } else { b });
        ys.push(best);
        let mut z = if !pa.is_empty() {
            coupled_probabilities(&d, pa, pb, c)
        } else if c == 2 {
            match post {
                0 => vec![-d[0], d[0]],
                4 => {
                    let mut q = vec![d[0]];
                    post_transform(&mut q, 4)?;
                    vec![q[0], -q[0]]
                }
                _ => vec![1.0 - d[0], d[0]],
            }
        } else {
            d
        };
        if !(pa.is_empty() && c == 2) {
            post_transform(&mut z, post)?;
        }
        zs.extend(z);
    }
    finish(&labels, ys, zs, n)
}

fn finish(labels: &Tensor, ys: Vec<usize>, zs: Vec<f64>, n: usize) -> Result<Vec<Value>> {
    let width = zs.len().checked_div(n).unwrap_or(labels.len());
    Ok(vec![
        Value::Tensor(pick_labels(labels, &ys)),
        Value::Tensor(Tensor::from_vec(
            vec![n, width],
            zs.iter().map(|&v| v as f32).collect(),
        )),
    ])
}

/// Class probabilities from the pairwise decision values: Platt's sigmoid per pair, then the
/// pairwise coupling of Wu, Lin and Weng (libsvm's `multiclass_probability`, 100 iterations).
fn coupled_probabilities(d: &[f64], pa: &[f32], pb: &[f32], c: usize) -> Vec<f64> {
    let mut r = vec![vec![0f64; c]; c];
    let mut p = 0;
    for i in 0..c {
        for j in i + 1..c {
            let v = 1.0 / (1.0 + (pa[p] as f64 * d[p] + pb[p] as f64).exp());
            let v = v.clamp(1e-7, 1.0 - 1e-7);
            r[i][j] = v;
            r[j][i] = 1.0 - v;
            p += 1;
        }
    }
    let mut q = vec![vec![0f64; c]; c];
    for t in 0..c {
        for j in 0..c {
            if j == t {
                continue;
            }
            q[t][t] += r[j][t] * r[j][t];
            q[t][j] = -r[j][t] * r[t][j];
        }
    }
    let mut prob = vec![1.0 / c as f64; c];
    let mut qp = vec![0f64; c];
    let eps = 0.005 / c as f64;
    for _ in 0..100 {
        let mut pqp = 0.0;
        for t in 0..c {
            qp[t] = (0..c).map(|j| q[t][j] * prob[j]).sum();
            pqp += prob[t] * qp[t];
        }
        if qp.iter().all(|&v| (v - pqp).abs() < eps) {
            break;
        }
        for t in 0..c {
            let diff = (-qp[t] + pqp) / q[t][t];
            prob[t] += diff;
            pqp = (pqp + diff * (diff * q[t][t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..c {
                qp[j] = (qp[j] + diff * q[t][j]) / (1.0 + diff);
                prob[j] /= 1.0 + diff;
            }
        }
    }
    prob
}
