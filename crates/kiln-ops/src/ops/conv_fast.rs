//! Conv, `com.microsoft:FusedConv` and `ai.kiln:FusedConv` on f32 NCHW through kiln-kernels'
//! packed convolution: weights are packed once per session when they are constants
//! ([`prepare`]), or per call otherwise. Other element types, ranks and activations stay on the
//! reference kernel in `conv.rs`.
use kiln_ir::AttrList;
use kiln_kernels::{Activation, Conv2d, PackedConv};

use super::conv::{conv_common, ConvGeom};
use super::linalg::Act;
use crate::kernel::{KernelCtx, PrepareCtx, PreparedKernel, Result};
use crate::value::{Data, Tensor, Value};

/// The 2-D geometry of a checked Conv, when it has two spatial dims.
pub(crate) fn conv2d_of(g: &ConvGeom) -> Option<Conv2d> {
    let w = &g.win;
    if w.kernel.len() != 2 {
        return None;
    }
    Some(Conv2d {
        c_in: g.c,
        c_out: g.m,
        groups: g.group,
        kernel: [w.kernel[0], w.kernel[1]],
        strides: [w.strides[0], w.strides[1]],
        dilations: [w.dilations[0], w.dilations[1]],
        pads: [w.pads[0], w.pads[1], w.pads_end[0], w.pads_end[1]],
    })
}

fn f32s(t: &Tensor) -> Option<&[f32]> {
    match &t.data {
        Data::F32(v) => Some(v),
        _ => None,
    }
}

/// Runs a checked convolution on the fast path, or returns `None` when it does not apply
/// (not f32, not 2-D, an activation the fast kernels lack).
pub(crate) fn run_unprepared(
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    z: Option<&Tensor>,
    act: Act,
) -> Option<Result<Tensor>> {
    let geom = conv2d_of(g)?;
    let act = act.fast()?;
    let (xv, wv) = (f32s(x)?, f32s(w)?);
    let bv = match b {
        Some(b) => Some(f32s(b)?),
        None => None,
    };
    let zv = match z {
        Some(z) => Some(f32s(z)?),
        None => None,
    };
    let packed = match PackedConv::new(geom, wv, bv) {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(execute(&packed, &geom, g, xv, zv, act))
}

fn execute(
    packed: &PackedConv,
    geom: &Conv2d,
    g: &ConvGeom,
    x: &[f32],
    z: Option<&[f32]>,
    act: Activation,
) -> Result<Tensor> {
    let shape = g.out_shape();
    let mut out = kiln_kernels::vecmath::zeros(shape.iter().product());
    packed
        .run_as(
            geom,
            x,
            [g.n, g.win.input[0], g.win.input[1]],
            z,
            act,
            &mut out,
        )
        .map_err(|e| e.to_string())?;
    Ok(Tensor::new(shape, Data::F32(out)))
}

/// The activation of a Conv-family node.
fn node_act(domain: &str, attrs: &[kiln_ir::Attribute]) -> Result<Act> {
    match domain {
        "com.microsoft" => Act::fused_conv(attrs),
        super::kiln_fused::DOMAIN => Ok(Act::Silu(attrs.get_float("alpha").unwrap_or(1.0))),
        _ => Ok(Act::Identity),
    }
}

/// A Conv whose weights (and bias) are constants, packed at session creation.
struct PreparedConv {
    packed: PackedConv,
    act: Act,
    fast: Activation,
}

/// Packs a Conv-family node's constant f32 4-D weights; `None` leaves the node to the plain
/// kernel (which also reports any error in the node).
pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let act = node_act(ctx.domain, ctx.attrs).ok()?;
    let fast = act.fast()?;
    let w = ctx.constant(1)?;
    let wv = f32s(w)?;
    if w.shape.len() != 4 {
        return None;
    }
    let bias = match ctx.optional_constant(2)? {
        None => None,
        Some(b) => Some(f32s(b)?),
    };
    let groups = usize::try_from(ctx.attrs.get_int("group").unwrap_or(1)).ok()?;
    let geom = Conv2d {
        c_in: w.shape[1].checked_mul(groups)?,
        c_out: w.shape[0],
        groups,
        kernel: [w.shape[2], w.shape[3]],
        strides: [1, 1],
        dilations: [1, 1],
        pads: [0; 4],
    };
    let packed = PackedConv::new(geom, wv, bias).ok()?;
    Some(Box::new(PreparedConv { packed, act, fast }))
}

impl PreparedKernel for PreparedConv {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let x = ctx.tensor(0)?;
        let w = ctx.tensor(1)?;
        let g = ConvGeom::new(ctx, &x.shape, &w.shape)?;
        let z = if ctx.domain == "com.microsoft" {
            ctx.opt_tensor(3)?
        } else {
            None
        };
        let geom = conv2d_of(&g);
        let xv = f32s(x);
        let zv = z.map(f32s);
        match (geom, xv, zv) {
            (Some(geom), Some(xv), None | Some(Some(_)))
                if z.is_none_or(|z| z.shape == g.out_shape()) =>
            {
                let out = execute(&self.packed, &geom, &g, xv, zv.flatten(), self.fast)?;
                Ok(vec![Value::Tensor(out)])
            }
            // Anything unusual (wrong types or shapes) goes to the plain kernel, which checks
            // it and says what is wrong.
            _ => conv_common(ctx, self.act, z),
        }
    }
}

#[cfg(test)]
mod tests {
    use kiln_ir::Attribute;

    use super::*;
    use crate::kernel::KernelCtx;

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(shape.to_vec(), v)
    }

    fn to_f64(t: &Tensor) -> Tensor {
        let v: Vec<f64> = t
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|&x| x as f64)
            .collect();
        Tensor::from_vec(t.shape.clone(), v)
    }

    fn run(domain: &str, attrs: &[Attribute], ins: &[Option<Tensor>], prepared: bool) -> Tensor {
        let values: Vec<Option<Value>> = ins.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let op = if domain.is_empty() {
            "Conv"
        } else {
            "FusedConv"
        };
        let ctx = KernelCtx {
            op_type: op,
            domain,
            opset: 21,
            attrs,
            inputs: values.iter().map(|v| v.as_ref()).collect(),
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        let out = if prepared {
            // W and B are constants; X (and Z) are not.
            let consts = ins
                .iter()
                .enumerate()
                .map(|(i, t)| if i == 1 || i == 2 { t.as_ref() } else { None })
                .collect();
            let p = prepare(&PrepareCtx {
                op_type: op,
                domain,
                opset: 21,
                attrs,
                constants: consts,
                absent: vec![],
                precision: kiln_kernels::Precision::F32,
            })
            .expect("prepared");
            p.run(&ctx)
        } else {
            crate::ops::kernel_fn(domain, op).unwrap()(&ctx)
        };
        out.unwrap().remove(0).into_tensor().unwrap()
    }

    /// f32 through the fast kernels (prepared and not) against the f64 reference kernel.
    fn check(domain: &str, attrs: Vec<Attribute>, x: &[usize], w: &[usize], with_z: bool) {
        let (xt, wt, bt) = (tensor(x, 1), tensor(w, 2), tensor(&w[..1], 3));
        let mut ins = vec![Some(xt), Some(wt), Some(bt)];
        let want64 = run(
            domain,
            &attrs,
            &ins.iter()
                .map(|t| t.as_ref().map(to_f64))
                .collect::<Vec<_>>(),
            false,
        );
        if with_z {
            let z = tensor(&want64.shape, 4);
            ins.push(Some(z));
        }
        let ins64: Vec<Option<Tensor>> = ins.iter().map(|t| t.as_ref().map(to_f64)).collect();
        let want = run(domain, &attrs, &ins64, false);
        let want = want.as_slice::<f64>().unwrap();
        for prepared in [false, true] {
            let got = run(domain, &attrs, &ins, prepared);
            assert_eq!(got.shape, want64.shape);
            for (i, (a, b)) in got.as_slice::<f32>().unwrap().iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{domain} {attrs:?} prepared={prepared} [{i}]: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn fast_paths_match_the_reference() {
        let ints = |n: &str, v: &[i64]| Attribute::ints(n, v);
        check("", vec![], &[1, 8, 9, 9], &[16, 8, 1, 1], false);
        check(
            "",
            vec![ints("pads", &[1, 1, 1, 1])],
            &[2, 5, 10, 7],
            &[12, 5, 3, 3],
            false,
        );
        check(
            "",
            vec![
                ints("strides", &[2, 2]),
                Attribute::string("auto_pad", "SAME_UPPER"),
            ],
            &[1, 4, 11, 12],
            &[8, 4, 3, 3],
            false,
        );
        check(
            "",
            vec![Attribute::int("group", 8), ints("pads", &[1, 1, 1, 1])],
            &[1, 8, 12, 12],
            &[8, 1, 3, 3],
            false,
        );
        check(
            "",
            vec![Attribute::int("group", 2), ints("dilations", &[2, 1])],
            &[1, 8, 12, 12],
            &[6, 4, 3, 3],
            false,
        );
        let relu = Attribute::string("activation", "Relu");
        check(
            "com.microsoft",
            vec![relu.clone()],
            &[1, 16, 7, 7],
            &[40, 16, 1, 1],
            true,
        );
        let clip = vec![
            Attribute::string("activation", "Clip"),
            Attribute::floats("activation_params", &[-0.1, 0.2]),
            ints("pads", &[1, 1, 1, 1]),
        ];
        check("com.microsoft", clip, &[1, 6, 9, 9], &[10, 6, 3, 3], true);
        check(
            super::super::kiln_fused::DOMAIN,
            vec![Attribute::string("activation", "SiLU")],
            &[1, 6, 9, 9],
            &[10, 6, 3, 3],
            false,
        );
    }

    #[test]
    fn not_prepared_when_weights_vary_or_the_activation_is_unknown() {
        let w = tensor(&[4, 2, 3, 3], 1);
        let ctx = |consts: Vec<Option<&Tensor>>, attrs: &[Attribute]| {
            let c = PrepareCtx {
                op_type: "FusedConv",
                domain: "com.microsoft",
                opset: 21,
                attrs,
                constants: consts,
                absent: vec![],
                precision: kiln_kernels::Precision::F32,
            };
            prepare(&c).is_some()
        };
        let relu = [Attribute::string("activation", "Relu")];
        assert!(ctx(vec![None, Some(&w)], &relu));
        assert!(!ctx(vec![None, None], &relu));
        assert!(
            !ctx(vec![None, Some(&w), None], &relu),
            "a bias computed at run time"
        );
        assert!(!ctx(
            vec![None, Some(&w)],
            &[Attribute::string("activation", "Gelu")]
        ));
    }
}
