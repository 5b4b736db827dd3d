//! One source of truth for what the GPU runs: every limit a lowering has is declined when the
//! node is claimed if its shapes are known then (with the lowering's own reason), and a node
//! claimed on symbolic shapes whose lowering fails for the shapes a run brings runs on the CPU
//! for that shape set, with a warning (`Session::fallbacks`), never a failed run.
mod common;

use common::*;
use kiln_ir::{Attribute, DataType, Dim, Model, ValueType};
use kiln_runtime::Level;
use kiln_wgpu::{WgpuOptions, WgpuProvider};

fn reason(m: &Model) -> Result<(), String> {
    let p = WgpuProvider::new(WgpuOptions::default()).expect("adapter");
    let (_, node) = m.graph.nodes().next().unwrap();
    p.support(m, node)
}

/// `m` with every graph input's dims made symbolic and the other values' types inferred anew.
fn symbolic(mut m: Model) -> Model {
    let inputs: Vec<_> = m.graph.inputs().to_vec();
    for (i, v) in inputs.into_iter().enumerate() {
        let val = m.graph.value_mut(v);
        if val.initializer.is_some() {
            continue;
        }
        let ty = val.declared.clone().unwrap();
        let rank = ty.shape().unwrap().len();
        let dims = (0..rank).map(|j| Dim::sym(&format!("d{i}_{j}"))).collect();
        let ty = ValueType::tensor(ty.dtype().unwrap(), dims);
        val.declared = Some(ty.clone());
        val.ty = Some(ty);
    }
    let ids: Vec<_> = m.graph.values().map(|(id, _)| id).collect();
    for id in ids {
        let v = m.graph.value_mut(id);
        if v.producer().is_some() {
            v.ty = None;
        }
    }
    kiln_ops::infer_shapes(&mut m).unwrap();
    m
}

/// With known shapes the node is declined with `why`; with symbolic ones it is claimed, and a
/// run falls back to the CPU, warns once, and matches the CPU alone.
fn declined_then_falls_back(what: &str, o: &Op, opset: i64, why: &str) {
    let (m, feeds) = build(o, opset, DataType::F32, &mut Rng::new(7));
    let r = reason(&m).expect_err(what);
    assert!(
        r.contains(why),
        "{what}: declined with '{r}', expected '{why}'"
    );
    let s = session(&m, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    assert_eq!(s.assignment().nodes_per_ep(2), vec![0, 1], "{what}");
    let sym = symbolic(m.clone());
    assert!(
        reason(&sym).is_ok(),
        "{what}: not claimed on symbolic shapes"
    );
    let gpu = session(&sym, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    assert_eq!(gpu.assignment().nodes_per_ep(2), vec![1, 0], "{what}");
    let cpu = session(&m, vec![], Level::Disabled);
    let want = cpu.run(feeds.clone()).unwrap();
    for round in 0..2 {
        let got = gpu
            .run(feeds.clone())
            .unwrap_or_else(|e| panic!("{what}: run {round} failed: {e}"));
        assert_close(what, &got, &want);
    }
    let fb = gpu.fallbacks();
    assert_eq!(fb.len(), 1, "{what}: {fb:?}");
    assert!(
        fb[0].contains(why) && fb[0].contains("node"),
        "{what}: {fb:?}"
    );
}

#[test]
fn resize_of_n_or_c() {
    let o = op(
        "Resize",
        vec![
            In::Data(vec![1, 2, 3, 3]),
            In::Absent,
            In::Absent,
            In::Ints(vec![2, 2, 6, 6]),
        ],
    )
    .attrs(vec![Attribute::string("mode", "nearest")]);
    declined_then_falls_back("Resize by sizes", &o, 13, "batch or channel axis");
    // Constant scales say it without shapes.
    let o = op(
        "Resize",
        vec![
            In::Data(vec![1, 2, 3, 3]),
            In::Absent,
            In::Floats(vec![4], vec![1.0, 2.0, 2.0, 2.0]),
        ],
    );
    let (m, _) = build(&o, 13, DataType::F32, &mut Rng::new(1));
    let r = reason(&symbolic(m)).unwrap_err();
    assert!(r.contains("batch or channel axis"), "{r}");
}

#[test]
fn matmul_batch_limits() {
    // Six batch dims that cannot merge (broadcast alternates between the operands).
    let o = op(
        "MatMul",
        vec![
            In::Data(vec![2, 1, 2, 1, 2, 1, 3, 4]),
            In::Data(vec![1, 2, 1, 2, 1, 2, 4, 5]),
        ],
    );
    declined_then_falls_back("MatMul with 6 batch dims", &o, 13, "batch dims (at most 4)");
    let o = op(
        "MatMul",
        vec![In::Data(vec![70_000, 1, 2]), In::Data(vec![70_000, 2, 1])],
    );
    declined_then_falls_back("MatMul of 70000 matrices", &o, 13, "at most 65535");
}

#[test]
fn broadcasting_past_six_dims() {
    let o = op(
        "Add",
        vec![
            In::Data(vec![2, 1, 2, 1, 2, 1, 2]),
            In::Data(vec![1, 2, 1, 2, 1, 2, 1]),
        ],
    );
    declined_then_falls_back("Add over 7 unmergeable dims", &o, 13, "at most 6");
}

#[test]
fn conv_groups_that_do_not_divide() {
    // Claimed on symbolic shapes only if consistent; with known shapes the lowering's reason.
    let o = op(
        "Conv",
        vec![In::Data(vec![1, 4, 5, 5]), In::Weight(vec![3, 2, 3, 3])],
    )
    .attrs(vec![Attribute::int("group", 2)]);
    let (m, _) = build(&o, 13, DataType::F32, &mut Rng::new(2));
    let r = reason(&m).unwrap_err();
    assert!(r.contains("group 2 does not divide"), "{r}");
}

#[test]
fn ort_gelu_runs_on_the_gpu() {
    let o = op("Gelu", vec![In::Data(vec![3, 70])]).domain("com.microsoft");
    check_all_on_gpu("com.microsoft:Gelu", &o, 17, &mut Rng::new(3));
    let o = op("QuickGelu", vec![In::Data(vec![3, 70])])
        .domain("com.microsoft")
        .attrs(vec![Attribute::float("alpha", 1.5)]);
    check_all_on_gpu("com.microsoft:QuickGelu", &o, 17, &mut Rng::new(4));
}
