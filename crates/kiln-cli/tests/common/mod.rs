//! Helpers of the CLI's integration tests: running the binary and building small models.
#![allow(dead_code)]
use std::path::Path;
use std::process::Command;

use kiln_onnx::proto::{
    self, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TypeProto, ValueInfoProto,
};

/// Runs kiln; (exit code, stdout, stderr).
pub fn kiln(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn tensor_type(elem: i32, dims: &[i64]) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem),
            shape: Some(proto::TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| proto::tensor_shape_proto::Dimension {
                        value: Some(proto::tensor_shape_proto::dimension::Value::DimValue(d)),
                        denotation: None,
                    })
                    .collect(),
            }),
        })),
        denotation: None,
    }
}

pub fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(tensor_type(1, dims)),
        ..Default::default()
    }
}

pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// x -> Relu(a) -> Relu(b) -> y, with a weight initializer `w` added to b's output by Add(c).
pub fn good_model() -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![
                node("a", "Relu", &["x"], &["t1"]),
                node("b", "Relu", &["t1"], &["t2"]),
                node("c", "Add", &["t2", "w"], &["y"]),
            ],
            initializer: vec![TensorProto {
                name: Some("w".into()),
                dims: vec![2, 3],
                data_type: Some(1),
                raw_data: Some(vec![0u8; 24].into()),
                ..Default::default()
            }],
            input: vec![vi("x", &[2, 3])],
            output: vec![vi("y", &[2, 3])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn write(dir: &Path, name: &str, m: &ModelProto) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, kiln_onnx::encode_model(m)).unwrap();
    p
}
