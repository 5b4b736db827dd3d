//! Element-wise ops: the unary activations and math functions (one kernel, a code per
//! function), broadcasting binary arithmetic over merged dims, Clip, BatchNormalization
//! (inference: a per-channel scale and shift made on the host) and the identities.
use kiln_ir::AttrList;

use super::{
    flat_groups, merge_dims, no_check, six, strides, u, Bind, CheckCtx, Dispatch, Lowered, NodeIo,
    OpInfo,
};
use crate::device::Kernel;

const ALL: (i64, i64) = (1, 24);

fn unary_code(op: &str) -> Option<u32> {
    Some(match op {
        "Relu" => 1,
        "LeakyRelu" => 2,
        "Sigmoid" => 3,
        "Tanh" => 4,
        "HardSigmoid" => 6,
        "HardSwish" => 7,
        "Swish" | "QuickGelu" => 8,
        "Elu" => 9,
        "Selu" => 10,
        "ThresholdedRelu" => 11,
        "Softplus" => 12,
        "Softsign" => 13,
        "Exp" => 14,
        "Log" => 15,
        "Neg" => 16,
        "Abs" => 17,
        "Sqrt" => 18,
        "Reciprocal" => 19,
        "Floor" => 20,
        "Ceil" => 21,
        "Erf" => 22,
        "Sin" => 24,
        "Cos" => 25,
        "Round" => 26,
        "Sign" => 27,
        _ => return None,
    })
}

fn binary_code(op: &str) -> Option<u32> {
    Some(match op {
        "Add" | "Sum" => 0,
        "Sub" => 1,
        "Mul" => 2,
        "Div" => 3,
        "Pow" => 4,
        "Max" => 5,
        "Min" => 6,
        "PRelu" => 7,
        _ => return None,
    })
}

pub fn info(op: &str) -> Option<OpInfo> {
    if unary_code(op).is_some() {
        return Some(OpInfo {
            opsets: ALL,
            params: &[],
            constant_params: &[],
            check: no_check,
            lower: unary,
        });
    }
    if binary_code(op).is_some() {
        return Some(OpInfo {
            opsets: ALL,
            params: &[],
            constant_params: &[],
            check: two_inputs,
            lower: binary,
        });
    }
    Some(match op {
        "Clip" => OpInfo {
            opsets: ALL,
            params: &[1, 2],
            constant_params: &[1, 2],
            check: no_check,
            lower: clip,
        },
        "Identity" => OpInfo {
            opsets: ALL,
            params: &[],
            constant_params: &[],
            check: no_check,
            lower: |_| Ok(Lowered::Alias),
        },
        "Dropout" => OpInfo {
            opsets: ALL,
            params: &[1, 2],
            constant_params: &[],
            check: dropout_check,
            lower: |_| Ok(Lowered::Alias),
        },
        "BatchNormalization" => OpInfo {
            opsets: (6, 24),
            params: &[1, 2, 3, 4],
            constant_params: &[1, 2, 3, 4],
            check: bn_check,
            lower: batch_norm,
        },
        _ => return None,
    })
}

/// com.microsoft's element-wise ops that ORT's optimizer writes.
pub fn info_ms(op: &str) -> Option<OpInfo> {
    match op {
        "QuickGelu" | "Gelu" => Some(OpInfo {
            opsets: (1, 1),
            params: &[],
            constant_params: &[],
            check: no_check,
            lower: unary,
        }),
        _ => None,
    }
}

fn two_inputs(c: &CheckCtx) -> Result<(), String> {
    let n = c.ranks.len();
    if n != 2 {
        return Err(format!("{} with {n} inputs (the GPU kernel takes 2)", c.op));
    }
    Ok(())
}

fn dropout_check(c: &CheckCtx) -> Result<(), String> {
    if c.attrs.get_int("training_mode").unwrap_or(0) != 0 {
        return Err("training-mode Dropout".into());
    }
    if let Some(Some(t)) = c.constants.get(2) {
        if t.to_i64_vec()
            .is_some_and(|v| v.first().copied().unwrap_or(0) != 0)
        {
            return Err("training-mode Dropout".into());
        }
    } else if c.ranks.get(2).is_some_and(|r| r.is_some()) {
        return Err("Dropout whose training_mode is not a constant".into());
    }
    Ok(())
}

fn bn_check(c: &CheckCtx) -> Result<(), String> {
    if c.attrs.get_int("training_mode").unwrap_or(0) != 0 {
        return Err("training-mode BatchNormalization".into());
    }
    if c.opset < 7 && c.attrs.get_int("spatial").unwrap_or(1) != 1 {
        return Err("BatchNormalization with spatial = 0".into());
    }
    Ok(())
}

fn launch(
    kernel: Kernel,
    params: Vec<u32>,
    binds: Vec<Bind>,
    n: usize,
) -> Result<Dispatch, String> {
    Ok(Dispatch {
        kernel,
        params,
        binds,
        groups: flat_groups(n)?,
    })
}

/// y = act(x) with the activation's code and parameters.
pub fn unary_dispatch(n: usize, code: u32, a: f32, b: f32) -> Result<Dispatch, String> {
    launch(
        Kernel::Unary,
        vec![u(n, "elements")?, code, a.to_bits(), b.to_bits()],
        vec![Bind::In(0), Bind::Out(0)],
        n,
    )
}

fn unary(io: &NodeIo) -> Result<Lowered, String> {
    let n: usize = io.outs[0].iter().product();
    // com.microsoft:Gelu is the exact (erf) form; ONNX's own Gelu (with `approximate`) has no
    // code, so only the contrib op reaches here under that name.
    let code = match io.op {
        "Gelu" => 23,
        op => unary_code(op).ok_or_else(|| format!("no unary kernel for {op}"))?,
    };
    let f = |name: &str, d: f32| io.attrs.get_float(name).unwrap_or(d);
    let (a, b) = match io.op {
        "LeakyRelu" => (f("alpha", 0.01), 0.0),
        "HardSigmoid" => (f("alpha", 0.2), f("beta", 0.5)),
        "Swish" | "QuickGelu" => (
            f("alpha", if io.op == "QuickGelu" { 1.702 } else { 1.0 }),
            0.0,
        ),
        "Elu" => (f("alpha", 1.0), 0.0),
        "Selu" => (f("alpha", 1.673_263_2), f("gamma", 1.050_701)),
        "ThresholdedRelu" => (f("alpha", 1.0), 0.0),
        _ => (0.0, 0.0),
    };
    Ok(Lowered::Run(vec![unary_dispatch(n, code, a, b)?]))
}

fn clip(io: &NodeIo) -> Result<Lowered, String> {
    let n: usize = io.outs[0].iter().product();
    let (lo, hi) = if io.opset < 11 {
        (
            io.attrs.get_float("min").unwrap_or(f32::MIN),
            io.attrs.get_float("max").unwrap_or(f32::MAX),
        )
    } else {
        let one = |i: usize, d: f32| -> Result<f32, String> {
            Ok(io
                .floats(i)?
                .and_then(|v| v.first().copied())
                .map_or(d, |x| x as f32))
        };
        (one(1, f32::MIN)?, one(2, f32::MAX)?)
    };
    Ok(Lowered::Run(vec![unary_dispatch(n, 5, lo, hi)?]))
}

/// Right-aligned strides of `shape` read as `out` (0 along broadcast dims).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|d| {
            if d < off || shape[d - off] == 1 {
                0
            } else {
                st[d - off]
            }
        })
        .collect()
}

fn binary(io: &NodeIo) -> Result<Lowered, String> {
    let out = &io.outs[0];
    let n: usize = out.iter().product();
    let code = binary_code(io.op).ok_or_else(|| format!("no binary kernel for {}", io.op))?;
    let sa = broadcast_strides(io.shape(0)?, out);
    let sb = broadcast_strides(io.shape(1)?, out);
    let (dims, st) = merge_dims(out, &[strides(out), sa, sb])?;
    let mut p = vec![u(n, "elements")?, code, dims.len() as u32];
    p.extend(six(&dims)?);
    p.extend(six(&st[1])?);
    p.extend(six(&st[2])?);
    Ok(Lowered::Run(vec![launch(
        Kernel::Binary,
        p,
        vec![Bind::In(0), Bind::In(1), Bind::Out(0)],
        n,
    )?]))
}

fn batch_norm(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let c = x.get(1).copied().unwrap_or(1);
    let inner: usize = x.iter().skip(2).product();
    let n: usize = x.iter().product();
    let eps = io.attrs.get_float("epsilon").unwrap_or(1e-5) as f64;
    let get = |i: usize| -> Result<Vec<f64>, String> {
        let v = io
            .floats(i)?
            .ok_or_else(|| format!("input {i} is missing"))?;
        if v.len() != c {
            return Err(format!(
                "input {i} has {} elements for {c} channels",
                v.len()
            ));
        }
        Ok(v)
    };
    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let mut scale = Vec::with_capacity(c);
    let mut shift = Vec::with_capacity(c);
    for i in 0..c {
        let s = gamma[i] / (var[i] + eps).sqrt();
        scale.push(s as f32);
        shift.push((beta[i] - mean[i] * s) as f32);
    }
    Ok(Lowered::Run(vec![launch(
        Kernel::Affine,
        vec![
            u(n, "elements")?,
            u(c, "channels")?,
            u(inner.max(1), "plane")?,
        ],
        vec![
            Bind::In(0),
            Bind::Data(scale),
            Bind::Data(shift),
            Bind::Out(0),
        ],
        n,
    )?]))
}
