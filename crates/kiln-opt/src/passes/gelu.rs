//! The exact GELU as exporters spell it, `x · 0.5 · (1 + erf(x / √2))`, -> com.microsoft:Gelu,
//! as ONNX Runtime's GeluFusion writes it; CPU provider, float32. Recognized orders: the
//! division as `Div(x, √2)` or `Mul(x, 1/√2)`, and the halving last (`Mul(Mul(x, 1 + erf), 0.5)`,
//! PyTorch's export of BERT), first (`Mul(Mul(x, 0.5), 1 + erf)`) or on the erf side
//! (`Mul(x, Mul(1 + erf, 0.5))`).
use kiln_ir::{DataType, Graph, IrError, Node, NodeId, ValueId};

use super::util::{assigned_to, const_values, dtype, is_onnx, replace};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::{Level, PassCtx};

pub struct GeluFusion;

pub struct Found {
    x: ValueId,
    nodes: Vec<NodeId>,
    out: ValueId,
}

/// The scalar constant among a binary node's inputs, and the other input.
fn scalar_and_other(ctx: &PassCtx, n: &Node) -> Option<(f64, ValueId)> {
    let (a, b) = (n.input(0)?, n.input(1)?);
    let one = |v| {
        const_values(ctx.model, v)
            .filter(|c| c.len() == 1)
            .map(|c| c[0])
    };
    match (one(a), one(b)) {
        (None, Some(c)) => Some((c, a)),
        (Some(c), None) => Some((c, b)),
        _ => None,
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * b.abs()
}

/// The other input of a binary node that reads `v`.
fn other_input(n: &Node, v: ValueId) -> Option<ValueId> {
    match (n.input(0)?, n.input(1)?) {
        (a, b) if a == v => Some(b),
        (a, b) if b == v => Some(a),
        _ => None,
    }
}

/// The lone consumer of `v`, when it is an ONNX `op`.
fn next(g: &Graph, v: ValueId, op: &str) -> Result<NodeId, Decline> {
    let n = lone_consumer(g, v)?;
    if is_onnx(g.node(n), op) {
        Ok(n)
    } else {
        Err(Decline::NoMatch)
    }
}

impl Fusion for GeluFusion {
    type Match = Found;

    /// Rooted at the Erf.
    fn select(&self, ctx: &PassCtx, erf: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let e = g.node(erf);
        if !is_onnx(e, "Erf") {
            return Err(Decline::NoMatch);
        }
        let (e_in, e_out) = (
            e.input(0).ok_or(Decline::NoMatch)?,
            e.output(0).ok_or(Decline::NoMatch)?,
        );
        // x / √2 (or x · 1/√2), read by the Erf alone.
        let (div, _) = g.value(e_in).producer().ok_or(Decline::NoMatch)?;
        let dn = g.node(div);
        let (c, x) = scalar_and_other(ctx, dn).ok_or(Decline::NoMatch)?;
        let scaled = (is_onnx(dn, "Div") && dn.input(1) != Some(x) && near(c, 2f64.sqrt()))
            || (is_onnx(dn, "Mul") && near(c, std::f64::consts::FRAC_1_SQRT_2));
        if !scaled || lone_consumer(g, e_in)? != erf {
            return Err(Decline::NoMatch);
        }
        // 1 + erf(...)
        let add = next(g, e_out, "Add")?;
        match scalar_and_other(ctx, g.node(add)) {
            Some((one, v)) if v == e_out && near(one, 1.0) => {}
            _ => return Err(Decline::NoMatch),
        }
        let a_out = g.node(add).output(0).ok_or(Decline::NoMatch)?;
        let m1 = next(g, a_out, "Mul")?;
        let m1n = g.node(m1);
        let m1_out = m1n.output(0).ok_or(Decline::NoMatch)?;
        let other = other_input(m1n, a_out).ok_or(Decline::NoMatch)?;
        let half = |n: NodeId| scalar_and_other(ctx, g.node(n)).filter(|(c, _)| near(*c, 0.5));
        let mut nodes = vec![div, erf, add, m1];
        let out = if other == x {
            // Mul(Mul(x, 1 + erf), 0.5)
            let m2 = next(g, m1_out, "Mul")?;
            if half(m2).map(|(_, v)| v) != Some(m1_out) {
                return Err(Decline::NoMatch);
            }
            nodes.push(m2);
            g.node(m2).output(0).ok_or(Decline::NoMatch)?
        } else if let Some((h, _)) = g
            .value(other)
            .producer()
            .filter(|(h, _)| is_onnx(g.node(*h), "Mul") && half(*h).map(|(_, v)| v) == Some(x))
        {
            // Mul(Mul(x, 0.5), 1 + erf)
            if lone_consumer(g, other)? != m1 {
                return Err(Decline::NoMatch);
            }
            nodes.push(h);
            m1_out
        } else if half(m1).map(|(_, v)| v) == Some(a_out) {
            // Mul(x, Mul(1 + erf, 0.5))
            let m2 = next(g, m1_out, "Mul")?;
            if other_input(g.node(m2), m1_out) != Some(x) {
                return Err(Decline::NoMatch);
            }
            nodes.push(m2);
            g.node(m2).output(0).ok_or(Decline::NoMatch)?
        } else {
            return Err(Decline::NoMatch);
        };
        if ctx.portable {
            return Err(Decline::because(
                "portable output: Gelu in com.microsoft is not a standard ONNX op",
            ));
        }
        if dtype(g, x) != Some(DataType::F32) {
            return Err(Decline::because(
                "Gelu runs float32 only (input type not float32 or unknown)",
            ));
        }
        assigned_to(ctx, &nodes, &["cpu"])?;
        Ok(Found { x, nodes, out })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = g.node(f.nodes[1]).name.clone();
        let node = Node::new(&name, "Gelu", "com.microsoft")
            .with_inputs(&[Some(f.x)])
            .with_outputs(&[Some(f.out)]);
        replace(g, &f.nodes, node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(GeluFusion, "gelu_fusion", Level::Extended, &["cpu"]);
