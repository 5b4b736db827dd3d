//! Pad: each dim grows by its begin and end pads (attribute before opset 11, input after; the
//! `axes` input of opset 18 limits which dims the pads apply to).
use kiln_ir::Dim;

use crate::ctx::{small, InferCtx, Inferred, Result};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::movement;
use crate::value::{Data, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let r = x.len();
    let pads = if ctx.opset < 11 {
        ctx.ints_attr("pads")
            .or(ctx.ints_attr("paddings"))
            .map(|p| p.to_vec())
    } else {
        ctx.known_ints(1)
    };
    let Some(pads) = pads else {
        return Ok(vec![Inferred::tensor(
            ctx.dtype(0),
            Some(vec![Dim::Unknown; r]),
        )]);
    };
    let axes: Vec<usize> = if ctx.has_input(3) {
        match ctx.known_ints(3) {
            Some(a) => a.iter().map(|&a| ctx.axis(a, r)).collect::<Result<_>>()?,
            None => {
                return Ok(vec![Inferred::tensor(
                    ctx.dtype(0),
                    Some(vec![Dim::Unknown; r]),
                )])
            }
        }
    } else {
        (0..r).collect()
    };
    small("pads", &pads)?;
    let n = axes.len();
    if pads.len() != 2 * n {
        return Err(format!(
            "pads has {} entries, expected {}",
            pads.len(),
            2 * n
        ));
    }
    let mut out = x.to_vec();
    for (i, &a) in axes.iter().enumerate() {
        out[a] = x[a].add_const(pads[i] + pads[i + n]);
        if out[a].known().is_some_and(|v| v < 0) {
            return Err(format!("padding makes dimension {a} negative"));
        }
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(out))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Pad") => Some(run),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// For each output coordinate along a dim of size `n` padded by `begin`/`end` (negative pads
/// crop), the input coordinate it reads, or `None` for the constant.
fn pad_table(n: usize, begin: i64, end: i64, mode: PadMode) -> Result<Vec<Option<usize>>> {
    let out = n as i64 + begin + end;
    if out < 0 {
        return Err(format!(
            "pads {begin} and {end} remove more than the {n} elements of the dimension"
        ));
    }
    if out as u64 > movement::MAX_OUTPUT_ELEMENTS as u64 {
        return Err(format!("padding makes a dimension of {out} elements"));
    }
    let n_i = n as i64;
    if n == 0 && out > 0 && mode != PadMode::Constant {
        return Err(format!("cannot pad an empty dimension in {mode:?} mode"));
    }
    Ok((0..out)
        .map(|o| {
            let i = o - begin;
            if (0..n_i).contains(&i) {
                return Some(i as usize);
            }
            match mode {
                PadMode::Constant => None,
                PadMode::Edge => Some(i.clamp(0, n_i - 1) as usize),
                PadMode::Wrap => Some(i.rem_euclid(n_i) as usize),
                PadMode::Reflect if n == 1 => Some(0),
                PadMode::Reflect => {
                    let period = 2 * (n_i - 1);
                    let m = i.rem_euclid(period);
                    Some(if m >= n_i { period - m } else { m } as usize)
                }
            }
        })
        .collect())
}

/// `x` padded along `axes` by `pads` (all begins, then all ends).
pub fn pad(x: &Tensor, pads: &[i64], axes: &[usize], mode: PadMode, fill: &Data) -> Result<Tensor> {
    movement::check_len(x, "data")?;
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(format!(
            "pads has {} entries, expected {}",
            pads.len(),
            2 * k
        ));
    }
    crate::ctx::small("pads", pads)?;
    let mut tables: Vec<Vec<Option<usize>>> = x
        .shape
        .iter()
        .map(|&d| (0..d).map(Some).collect())
        .collect();
    for (j, &a) in axes.iter().enumerate() {
        tables[a] = pad_table(x.shape[a], pads[j], pads[j + k], mode)?;
    }
    let shape: Vec<usize> = tables.iter().map(|t| t.len()).collect();
    movement::numel(&shape)?;
    let st = strides(&x.shape);
    for (t, &s) in tables.iter_mut().zip(&st) {
        t.iter_mut().for_each(|o| *o = o.map(|c| c * s));
    }
    Ok(Tensor::new(
        shape,
        movement::take_tables(&x.data, &tables, Some(fill))?,
    ))
}

/// One zero element of `dtype` (all-zero bits for packed types).
fn zero(dtype: kiln_ir::DataType) -> Result<Data> {
    match Data::zeros(dtype, 1) {
        Ok(d) => Ok(d),
        Err(_) => Ok(Data::Packed {
            dtype,
            raw: vec![0; dtype.storage_bytes(1).ok_or("cannot pad this type")?],
        }),
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let mode = match ctx.str_attr("mode").unwrap_or("constant") {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(format!("unknown pad mode '{other}'")),
    };
    let r = x.rank();
    let (pads, fill, axes) = if ctx.opset < 11 {
        let pads = ctx
            .ints_attr("pads")
            .or(ctx.ints_attr("paddings"))
            .ok_or("pads attribute is required")?
            .to_vec();
        let value = ctx.float_attr("value", 0.0) as f64;
        let v = Tensor::new(vec![], Data::F64(vec![value]));
        let fill = crate::ops::cast::cast(&v, x.dtype(), Default::default())?.data;
        (pads, fill, (0..r).collect::<Vec<_>>())
    } else {
        let p = ctx.tensor(1)?;
        if p.rank() != 1 {
            return Err(format!("pads must be 1-D, got shape {:?}", p.shape));
        }
        let pads = p.to_i64s()?;
        let fill = match ctx.opt_tensor(2)? {
            Some(c) if movement::numel(&c.shape)? == 0 => zero(x.dtype())?,
            Some(c) => {
                if c.dtype() != x.dtype() {
                    return Err(format!(
                        "constant_value has type {} but data has {}",
                        c.dtype(),
                        x.dtype()
                    ));
                }
                movement::scalar_data(c, "constant_value")?
            }
            None => zero(x.dtype())?,
        };
        let axes = match ctx.opt_tensor(3)? {
            Some(a) => movement::norm_axes(&a.to_i64s()?, r)?,
            None => (0..r).collect(),
        };
        (pads, fill, axes)
    };
    one(pad(x, &pads, &axes, mode, &fill)?)
}

#[cfg(test)]
mod kernel_tests {
    use super::{pad_table, PadMode};
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn tables() {
        let t = |n, b, e, m| -> Vec<Option<usize>> { pad_table(n, b, e, m).unwrap() };
        let s = |v: &[usize]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        assert_eq!(t(3, 2, 2, PadMode::Reflect), s(&[2, 1, 0, 1, 2, 1, 0]));
        assert_eq!(t(3, 4, 0, PadMode::Reflect), s(&[0, 1, 2, 1, 0, 1, 2]));
        assert_eq!(t(3, 2, 1, PadMode::Edge), s(&[0, 0, 0, 1, 2, 2]));
        assert_eq!(t(3, 2, 2, PadMode::Wrap), s(&[1, 2, 0, 1, 2, 0, 1]));
        assert_eq!(t(3, -1, 1, PadMode::Constant), vec![Some(1), Some(2), None]);
        assert!(pad_table(3, -2, -2, PadMode::Constant).is_err());
        assert!(pad_table(0, 1, 0, PadMode::Edge).is_err());
    }

    #[test]
    fn pad_kernel() {
        let x = f32s(&[2, 2], &[1., 2., 3., 4.]);
        let y = run(
            "Pad",
            &[],
            &[x.clone(), i64s(&[4], &[0, 1, 1, 0]), f32s(&[], &[9.])],
        )
        .unwrap();
        assert_eq!(y.shape, vec![3, 3]);
        assert_eq!(vals(&y), vec![9., 1., 2., 9., 3., 4., 9., 9., 9.]);
        // axes input (opset 18), edge mode.
        let ins = [
            Some(x.clone()),
            Some(i64s(&[2], &[1, 1])),
            None,
            Some(i64s(&[1], &[-1])),
        ];
        let y = run_opset("Pad", 18, &[Attribute::string("mode", "edge")], &ins, 1).unwrap();
        assert_eq!(vals(&y[0]), vec![1., 1., 2., 2., 3., 3., 4., 4.]);
        // Opset 2: attributes.
        let a = [
            Attribute::ints("pads", &[0, 1, 0, 0]),
            Attribute::float("value", 5.0),
        ];
        let y = run_opset("Pad", 2, &a, &[Some(x.clone())], 1).unwrap();
        assert_eq!(vals(&y[0]), vec![5., 1., 2., 5., 3., 4.]);
        assert!(run("Pad", &[], &[x, i64s(&[2], &[1, 1])]).is_err());
    }
}
