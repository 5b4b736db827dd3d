//! kiln loads what ONNX allows and refuses what ONNX Runtime refuses: repeated and empty node
//! names, "?" dims that name no shared size, initializers listed as inputs (overridable from
//! IR version 4), the default domain spelled "ai.onnx"; opsets newer than kiln implements,
//! unknown ops of ONNX domains in `optimize` (unless `--allow-unknown-ops`), and nodes whose
//! types contradict their op.
use std::path::{Path, PathBuf};

use kiln_onnx::proto::{
    tensor_shape_proto::dimension, ModelProto, OperatorSetIdProto, TensorProto,
};

mod common;
use common::*;

fn npy(dir: &Path, name: &str, shape: &[usize], v: &[f32]) -> PathBuf {
    let p = dir.join(name);
    let dims: Vec<String> = shape.iter().map(|d| format!("{d},")).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(" ")
    );
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_npy_f32(p: &Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap();
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Runs the model with the given input files; the output `y` as floats.
fn run_y(model: &Path, inputs: &[(&str, &Path)]) -> Vec<f32> {
    let out = model.with_extension("out");
    let mut args = vec![
        "run".to_string(),
        model.to_str().unwrap().into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    for (n, p) in inputs {
        args.push("--input".into());
        args.push(format!("{n}={}", p.display()));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = kiln(&a);
    assert_eq!(code, 0, "{err}");
    read_npy_f32(&out.join("y.npy"))
}

fn one_op(op: &str) -> ModelProto {
    let mut m = good_model();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![node("n", op, &["x"], &["y"])];
    g.initializer.clear();
    m
}

#[test]
fn repeated_and_empty_node_names_load_run_and_save_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = good_model();
    let g = m.graph.as_mut().unwrap();
    g.node[1].name = Some("a".into());
    g.node[2].name = Some(String::new());
    let p = write(dir.path(), "names.onnx", &m);
    let x = npy(dir.path(), "x.npy", &[2, 3], &[-1., 2., -3., 4., -5., 6.]);
    assert_eq!(run_y(&p, &[("x", &x)]), vec![0., 2., 0., 4., 0., 6.]);
    let o = dir.path().join("saved.onnx");
    let (code, _, err) = kiln(&[
        "optimize",
        p.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--level",
        "disabled",
    ]);
    assert_eq!(code, 0, "{err}");
    let saved = kiln_onnx::decode_model(&std::fs::read(&o).unwrap()).unwrap();
    let names: Vec<_> = saved
        .graph
        .unwrap()
        .node
        .iter()
        .map(|n| n.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["a", "a", ""]);
    // Errors still say which node: the name with its position when the name repeats.
    let mut m = m.clone();
    m.graph.as_mut().unwrap().node[1].input[0] = "nowhere".into();
    let p = write(dir.path(), "dangling.onnx", &m);
    let (code, _, err) = kiln(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("'nowhere'") && err.contains("node 'a'"),
        "{err}"
    );
}

#[test]
fn question_mark_dims_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = good_model();
    let g = m.graph.as_mut().unwrap();
    // y = ReduceSum(a) + ReduceSum(b), with a: [1, ?] and b: [1, ?].
    g.node = vec![
        node("ra", "ReduceSum", &["a"], &["sa"]),
        node("rb", "ReduceSum", &["b"], &["sb"]),
        node("s", "Add", &["sa", "sb"], &["y"]),
    ];
    g.initializer.clear();
    let mut a = vi("a", &[1, 1]);
    let mut b = vi("b", &[1, 1]);
    for v in [&mut a, &mut b] {
        if let Some(kiln_onnx::proto::type_proto::Value::TensorType(t)) =
            v.r#type.as_mut().unwrap().value.as_mut()
        {
            t.shape.as_mut().unwrap().dim[1].value = Some(dimension::Value::DimParam("?".into()));
        }
    }
    g.input = vec![a, b];
    g.output = vec![vi("y", &[1, 1])];
    let p = write(dir.path(), "anon.onnx", &m);
    let fa = npy(dir.path(), "a.npy", &[1, 3], &[1., 2., 3.]);
    let fb = npy(dir.path(), "b.npy", &[1, 5], &[1., 1., 1., 1., 1.]);
    assert_eq!(run_y(&p, &[("a", &fa), ("b", &fb)]), vec![11.]);
}

/// Little-endian bytes of f32 values, as an initializer's `raw_data`.
fn raw_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn initializers_listed_as_inputs_are_overridable_from_ir_4() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = good_model();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![node("c", "Add", &["x", "w"], &["y"])];
    g.initializer[0].raw_data = Some(raw_f32(&[1., 2., 3., 4., 5., 6.]).into());
    g.input.push(vi("w", &[2, 3]));
    let x = npy(dir.path(), "x.npy", &[2, 3], &[10.; 6]);
    let w = npy(dir.path(), "w.npy", &[2, 3], &[100.; 6]);
    let p = write(dir.path(), "ir8.onnx", &m);
    assert_eq!(run_y(&p, &[("x", &x)]), vec![11., 12., 13., 14., 15., 16.]);
    assert_eq!(run_y(&p, &[("x", &x), ("w", &w)]), vec![110.; 6]);
    // The optimizer must not fold it as a constant; the saved model keeps it an input.
    let o = dir.path().join("opt.onnx");
    let (code, _, err) = kiln(&["optimize", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let saved = kiln_onnx::decode_model(&std::fs::read(&o).unwrap())
        .unwrap()
        .graph
        .unwrap();
    assert!(saved.input.iter().any(|i| i.name.as_deref() == Some("w")));
    assert!(saved
        .initializer
        .iter()
        .any(|i| i.name.as_deref() == Some("w")));
    assert_eq!(run_y(&o, &[("x", &x), ("w", &w)]), vec![110.; 6]);
    // IR version 3: initializers are constants, and there is nothing to override.
    m.ir_version = Some(3);
    let p = write(dir.path(), "ir3.onnx", &m);
    let (code, _, err) = kiln(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        &format!("w={}", w.display()),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no input named 'w'"), "{err}");
}

/// A MatMul whose B is an overridable initializer: kernels that pack constant weights at
/// session creation must not bake it in, so a feed of the same shape changes the result.
#[test]
fn an_overridden_matmul_weight_is_not_prepacked() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = good_model();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![node("c", "MatMul", &["x", "w"], &["y"])];
    g.initializer[0].dims = vec![3, 2];
    g.initializer[0].raw_data = Some(raw_f32(&[1., 2., 3., 4., 5., 6.]).into());
    g.input.push(vi("w", &[3, 2]));
    g.output = vec![vi("y", &[2, 2])];
    let x = npy(dir.path(), "x.npy", &[2, 3], &[1.; 6]);
    let w = npy(dir.path(), "w.npy", &[3, 2], &[10.; 6]);
    let p = write(dir.path(), "mm.onnx", &m);
    assert_eq!(run_y(&p, &[("x", &x)]), vec![9., 12., 9., 12.]);
    assert_eq!(run_y(&p, &[("x", &x), ("w", &w)]), vec![30.; 4]);
}

#[test]
fn the_default_domain_may_be_spelled_ai_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = one_op("Relu");
    m.opset_import = vec![OperatorSetIdProto {
        domain: Some("ai.onnx".into()),
        version: Some(17),
    }];
    m.graph.as_mut().unwrap().node[0].domain = Some("ai.onnx".into());
    let p = write(dir.path(), "aionnx.onnx", &m);
    let x = npy(dir.path(), "x.npy", &[2, 3], &[-1., 2., -3., 4., -5., 6.]);
    assert_eq!(run_y(&p, &[("x", &x)]), vec![0., 2., 0., 4., 0., 6.]);
}

#[test]
fn newer_opsets_unknown_ops_and_contradictory_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = one_op("Relu");
    m.opset_import[0].version = Some(99);
    let p = write(dir.path(), "new.onnx", &m);
    let o = dir.path().join("o.onnx");
    for args in [
        vec!["run", p.to_str().unwrap()],
        vec!["optimize", p.to_str().unwrap(), "-o", o.to_str().unwrap()],
    ] {
        let (code, _, err) = kiln(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            err.contains("opset 99 of domain 'ai.onnx'") && err.contains("up to 28"),
            "{err}"
        );
    }
    let p = write(dir.path(), "unknown.onnx", &one_op("Frobnicate"));
    let (code, _, err) = kiln(&["optimize", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("node 'n' (Frobnicate)") && err.contains("--allow-unknown-ops"),
        "{err}"
    );
    assert!(!o.exists());
    let (code, _, err) = kiln(&[
        "optimize",
        p.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--allow-unknown-ops",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(o.exists());
    // A Conv whose weight has rank 2 is an error in optimize, naming the node.
    let mut m = one_op("Conv");
    let g = m.graph.as_mut().unwrap();
    g.node[0].input.push("w".into());
    g.input = vec![vi("x", &[1, 2, 4, 4])];
    g.output = vec![vi("y", &[1, 2, 4, 4])];
    g.initializer = vec![TensorProto {
        name: Some("w".into()),
        dims: vec![2, 2],
        data_type: Some(1),
        raw_data: Some(vec![0u8; 16].into()),
        ..Default::default()
    }];
    let p = write(dir.path(), "conv.onnx", &m);
    let o2 = dir.path().join("o2.onnx");
    let (code, _, err) = kiln(&[
        "optimize",
        p.to_str().unwrap(),
        "-o",
        o2.to_str().unwrap(),
        "--level",
        "disabled",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("node 'n' (Conv)") && err.contains("rank 2"),
        "{err}"
    );
    assert!(!o2.exists());
}
