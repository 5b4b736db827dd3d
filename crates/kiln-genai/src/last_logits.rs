//! Logits for the positions the search reads, not for the whole prompt. The builder's graph
//! projects every position's hidden state onto the vocabulary, but a generator only ever
//! reads one position per row: the prompt's last token, then the one new token. On the small
//! Llama of the test set the vocabulary projection of a 128-token prompt was a quarter of the
//! prefill (4.9 of 21 ms). The rewrite gathers each row's position before that projection,
//! chosen by a new input, so the logits come out as `[batch, 1, vocab]`.

use kiln_ir::{Attribute, DataType, Dim, Model, Node, ValueType};

/// The input the rewrite adds: `[batch, 1, 1]` int64, each row's position in this step.
pub const POSITIONS: &str = "kiln_logits_positions";

/// Why the graph keeps its full logits.
#[derive(Debug, PartialEq)]
pub enum Kept {
    NoOutput,
    /// The logits' producer is not a product over the hidden states that the gather can
    /// precede (a bias, a softcap or a cast after it, say).
    Producer(String),
    /// The hidden states feed other nodes too, or are a graph output.
    SharedHidden,
    Name,
    /// GatherND's `batch_dims` needs ai.onnx 12.
    Opset,
    Graph(String),
}

/// Inserts `GatherND(hidden, positions, batch_dims = 1)` before the vocabulary product that
/// makes `logits`, and declares the logits `[batch, 1, vocab]`.
pub fn rewrite(model: &mut Model, logits: &str) -> Result<(), Kept> {
    if model.opset("").is_none_or(|v| v < 12) {
        return Err(Kept::Opset);
    }
    let g = &mut model.graph;
    let out = g.find_value(logits).ok_or(Kept::NoOutput)?;
    if !g.is_graph_output(out) {
        return Err(Kept::NoOutput);
    }
    let (node, slot) = g.value(out).producer().ok_or(Kept::NoOutput)?;
    let n = g.node(node);
    let op = (n.domain.as_str(), n.op_type.as_str());
    // Each output row of these depends on its own input row alone.
    if slot != 0 || !matches!(op, ("", "MatMul") | ("com.microsoft", "MatMulNBits")) {
        return Err(Kept::Producer(format!("{}:{}", op.0, op.1)));
    }
    let hidden = n.input(0).ok_or(Kept::SharedHidden)?;
    // A weight matrix of rank 2 keeps the product per row; a batched B would not.
    if op.1 == "MatMul" {
        let rank = n
            .input(1)
            .and_then(|b| g.value(b).ty.as_ref()?.shape().map(<[Dim]>::len));
        if rank != Some(2) {
            return Err(Kept::Producer("MatMul with a batched B".into()));
        }
    }
    let rank3 = g
        .value(hidden)
        .ty
        .as_ref()
        .and_then(|t| t.shape().map(|s| s.len() == 3));
    if rank3 == Some(false) {
        return Err(Kept::Producer("hidden states not of rank 3".into()));
    }
    if g.value(hidden).consumers().len() != 1 || g.is_graph_output(hidden) {
        return Err(Kept::SharedHidden);
    }
    if g.find_value(POSITIONS).is_some() {
        return Err(Kept::Name);
    }
    let batch = g
        .value(out)
        .ty
        .as_ref()
        .and_then(|t| t.shape().and_then(|s| s.first().cloned()))
        .unwrap_or_else(|| Dim::sym("batch_size"));
    let vocab = g
        .value(out)
        .ty
        .as_ref()
        .and_then(|t| t.shape().and_then(|s| s.last().cloned()))
        .unwrap_or(Dim::Unknown);
    let dtype = g.value(out).ty.as_ref().and_then(ValueType::dtype);
    let err = |e: kiln_ir::IrError| Kept::Graph(e.to_string());
    let pos_ty = ValueType::tensor(
        DataType::I64,
        vec![batch.clone(), Dim::Known(1), Dim::Known(1)],
    );
    let pos = g.add_value(POSITIONS, Some(pos_ty.clone())).map_err(err)?;
    g.value_mut(pos).declared = Some(pos_ty);
    g.push_input(pos);
    let name = g.unique_name(&format!("{}_at_positions", g.value(hidden).name));
    let picked = g.add_value(&name, None).map_err(err)?;
    let gather = Node::new(&g.unique_name("kiln_logits_gather"), "GatherND", "")
        .with_inputs(&[Some(hidden), Some(pos)])
        .with_outputs(&[Some(picked)])
        .with_attrs(vec![Attribute::int("batch_dims", 1)]);
    g.add_node(gather).map_err(err)?;
    g.set_input(node, 0, Some(picked)).map_err(err)?;
    g.toposort().map_err(err)?;
    if let Some(d) = dtype {
        let ty = ValueType::tensor(d, vec![batch, Dim::Known(1), vocab]);
        let v = g.value_mut(out);
        v.ty = Some(ty.clone());
        v.declared = Some(ty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{Graph, Tensor as IrTensor};
    use kiln_runtime::{Data, Level, Session, SessionOptions, Tensor, Value};

    /// h[batch, seq, 4] -> Mul(h, h) -> MatMul(W[4, 6]) -> `tail` ops -> logits; `share` also
    /// makes the squared states a graph output.
    fn decoder(tail: &[&str], share: bool) -> Model {
        let mut g = Graph::new("decoder");
        let ty = ValueType::tensor(
            DataType::F32,
            vec![Dim::sym("batch"), Dim::sym("seq"), Dim::Known(4)],
        );
        let h = g.add_value("h", Some(ty.clone())).unwrap();
        g.value_mut(h).declared = Some(ty);
        g.push_input(h);
        let w: Vec<f32> = (0..24).map(|i| (i as f32 * 0.7).sin()).collect();
        let w = g
            .add_initializer("W", IrTensor::from_f32(vec![4, 6], &w))
            .unwrap();
        let sq = g.add_value("sq", None).unwrap();
        g.add_node(
            Node::new("square", "Mul", "")
                .with_inputs(&[Some(h), Some(h)])
                .with_outputs(&[Some(sq)]),
        )
        .unwrap();
        let name = |i: usize| {
            if i == tail.len() {
                "logits".to_string()
            } else {
                format!("t{i}")
            }
        };
        let mut prev = g.add_value(&name(0), None).unwrap();
        g.add_node(
            Node::new("lm_head", "MatMul", "")
                .with_inputs(&[Some(sq), Some(w)])
                .with_outputs(&[Some(prev)]),
        )
        .unwrap();
        for (i, op) in tail.iter().enumerate() {
            let out = g.add_value(&name(i + 1), None).unwrap();
            g.add_node(
                Node::new(&format!("tail{i}"), op, "")
                    .with_inputs(&[Some(prev)])
                    .with_outputs(&[Some(out)]),
            )
            .unwrap();
            prev = out;
        }
        let mut outs = vec![prev];
        if share {
            outs.push(sq);
        }
        g.set_outputs(outs);
        g.check_consistency().unwrap();
        Model::new(g, &[("", 17)])
    }

    fn run(m: Model, feeds: Vec<(String, Value)>) -> Vec<f32> {
        let opts = SessionOptions {
            threads: Some(1),
            level: Level::All,
            providers: vec![],
            memory_limit: None,
            precision: kiln_runtime::Precision::F32,
        };
        let s = Session::from_model(m, opts).unwrap();
        let out = s.run(feeds).unwrap().remove(0).1;
        let Value::Tensor(t) = out else {
            panic!("not a tensor")
        };
        let Data::F32(v) = t.data else {
            panic!("not f32")
        };
        v
    }

    #[test]
    fn logits_come_out_at_the_given_positions_only() {
        let (b, s) = (3, 5);
        let h: Vec<f32> = (0..b * s * 4).map(|i| (i as f32 * 0.31).cos()).collect();
        let feed = || {
            (
                "h".to_string(),
                Value::Tensor(Tensor::from_vec(vec![b, s, 4], h.clone())),
            )
        };
        let full = run(decoder(&[], false), vec![feed()]);
        let mut m = decoder(&[], false);
        rewrite(&mut m, "logits").unwrap();
        let at = [4usize, 0, 2];
        let pos = Tensor::new(
            vec![b, 1, 1],
            Data::I64(at.iter().map(|&i| i as i64).collect()),
        );
        let picked = run(m, vec![feed(), (POSITIONS.into(), Value::Tensor(pos))]);
        assert_eq!(picked.len(), b * 6, "one row of logits per batch row");
        for (r, &i) in at.iter().enumerate() {
            let want = &full[(r * s + i) * 6..(r * s + i + 1) * 6];
            // A product of 3 rows takes another micro-kernel than one of 15 (on AVX2 a
            // 3-row tile sums alternate k steps apart), so the last bits may differ.
            for (g, w) in picked[r * 6..(r + 1) * 6].iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "row {r}, position {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn graphs_that_need_every_position_keep_them() {
        // A per-position op after the projection could be moved past, but is not: only a
        // projection that makes the logits itself is rewritten.
        let mut m = decoder(&["Softmax"], false);
        assert_eq!(
            rewrite(&mut m, "logits"),
            Err(Kept::Producer(":Softmax".into()))
        );
        let mut m = decoder(&[], true);
        assert_eq!(rewrite(&mut m, "logits"), Err(Kept::SharedHidden));
        let mut m = decoder(&[], false);
        assert_eq!(rewrite(&mut m, "scores"), Err(Kept::NoOutput));
        let mut m = decoder(&[], false);
        m.opsets[0].version = 11;
        assert_eq!(rewrite(&mut m, "logits"), Err(Kept::Opset));
        let mut m = decoder(&[], false);
        rewrite(&mut m, "logits").unwrap();
        assert_eq!(
            rewrite(&mut m, "logits"),
            Err(Kept::Name),
            "a second rewrite declines"
        );
    }
}
