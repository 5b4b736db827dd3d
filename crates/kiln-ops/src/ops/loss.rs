//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: inputs `[N, C, d1...]`, targets
//! `[N, d1...]`, optional class weights, `ignore_index`, reduction none / sum / mean (the mean
//! divides by the sum of the weights applied). Computed in f64.
use crate::kernel::{KernelCtx, KernelFn, Result};
use crate::ops::misc::data_from_f64;
use crate::ops::movement::check_len;
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss") => Some(loss),
        _ => None,
    }
}

/// Log-softmax over axis 1 of `[N, C, D]` data.
fn log_softmax(x: &mut [f64], n: usize, c: usize, d: usize) {
    for i in 0..n {
        for k in 0..d {
            let at = |j: usize| (i * c + j) * d + k;
            let m = (0..c).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            let s = (0..c).map(|j| (x[at(j)] - m).exp()).sum::<f64>().ln();
            for j in 0..c {
                x[at(j)] = x[at(j)] - m - s;
            }
        }
    }
}

fn loss(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, target) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check_len(x, "input")?;
    check_len(target, "target")?;
    if !x.dtype().is_float() {
        return Err(format!(
            "{} takes float scores, got {}",
            ctx.op_type,
            x.dtype()
        ));
    }
    if x.rank() < 2
        || target.rank() + 1 != x.rank()
        || target.shape[0] != x.shape[0]
        || target.shape[1..] != x.shape[2..]
    {
        return Err(format!(
            "scores {:?} and targets {:?} do not match as [N, C, d...] and [N, d...]",
            x.shape, target.shape
        ));
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let d: usize = x.shape[2..].iter().product();
    let mut v = x.to_f64s()?;
    let sce = ctx.op_type == "SoftmaxCrossEntropyLoss";
    if sce {
        log_softmax(&mut v, n, c, d);
    }
    let t = target.to_i64s()?;
    let w = match ctx.opt_tensor(2)? {
        Some(w) if w.shape == [c] => Some(w.to_f64s()?),
        Some(w) => return Err(format!("weights must have shape [{c}], got {:?}", w.shape)),
        None => None,
    };
    let ignore = ctx
        .attr("ignore_index")
        .map(|_| ctx.int_attr("ignore_index", 0));
    let mut losses = Vec::with_capacity(n * d);
    let mut wsum = 0.0;
    for i in 0..n {
        for k in 0..d {
            let tk = t[i * d + k];
            if Some(tk) == ignore {
                losses.push(0.0);
                continue;
            }
            if tk < 0 || tk as usize >= c {
                return Err(format!("target {tk} is out of range for {c} classes"));
            }
            let wt = w.as_ref().map_or(1.0, |w| w[tk as usize]);
            wsum += wt;
            losses.push(-wt * v[(i * c + tk as usize) * d + k]);
        }
    }
    let (shape, out) = match ctx.str_attr("reduction").unwrap_or("mean") {
        "none" => (target.shape.clone(), losses),
        "sum" => (vec![], vec![losses.iter().sum()]),
        "mean" => (vec![], vec![losses.iter().sum::<f64>() / wsum]),
        r => return Err(format!("unknown reduction '{r}'")),
    };
    let mut outs = vec![Value::Tensor(Tensor::new(
        shape,
        data_from_f64(x.dtype(), &out)?,
    ))];
    if sce && ctx.num_outputs > 1 {
        outs.push(Value::Tensor(Tensor::new(
            x.shape.clone(),
            data_from_f64(x.dtype(), &v)?,
        )));
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, i64s, run, run_opset, vals};
    use kiln_ir::Attribute;

    #[test]
    fn nll_weights_and_ignore() {
        let x = f32s(&[2, 3], &[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]);
        let t = i64s(&[2], &[2, 0]);
        let r = run("NegativeLogLikelihoodLoss", &[], &[x.clone(), t.clone()]).unwrap();
        assert_eq!(vals(&r), vec![3.5]);
        let w = f32s(&[3], &[1.0, 0.0, 3.0]);
        let r = run("NegativeLogLikelihoodLoss", &[], &[x.clone(), t.clone(), w]).unwrap();
        assert_eq!(vals(&r), vec![(9.0 + 4.0) / 4.0]);
        let ign = [
            Attribute::int("ignore_index", 0),
            Attribute::string("reduction", "none"),
        ];
        let r = run("NegativeLogLikelihoodLoss", &ign, &[x.clone(), t]).unwrap();
        assert_eq!(vals(&r), vec![3.0, 0.0]);
        assert!(run("NegativeLogLikelihoodLoss", &[], &[x, i64s(&[2], &[3, 0])]).is_err());
    }

    #[test]
    fn sce_log_prob() {
        let x = f32s(&[1, 2], &[0.0, 0.0]);
        let r = run_opset(
            "SoftmaxCrossEntropyLoss",
            13,
            &[],
            &[Some(x), Some(i64s(&[1], &[1]))],
            2,
        )
        .unwrap();
        let l = 2f32.ln();
        assert!((vals(&r[0])[0] - l).abs() < 1e-6);
        assert!(vals(&r[1]).iter().all(|v| (v + l).abs() < 1e-6));
    }
}
