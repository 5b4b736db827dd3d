//! Test data in ONNX's protobuf files (`input_0.pb`, `output_0.pb`): tensors, sequences and
//! optionals, read as run-time values according to the type the model declares.
use std::path::Path;

use anyhow::{bail, Context};
use kiln_ir::{DataType, ValueType};
use kiln_onnx::proto::{OptionalProto, SequenceProto, TensorProto};
use kiln_ops::{Tensor, Value};
use prost::Message;

fn tensor(t: &TensorProto) -> anyhow::Result<Tensor> {
    let ir = kiln_ir::Tensor::from_proto(t).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Tensor::from_ir(&ir))
}

/// Reads `path` as the value of a graph input or output of type `ty`.
pub fn read_value(path: &Path, ty: Option<&ValueType>) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes, ty).with_context(|| format!("{}", path.display()))
}

fn decode(bytes: &[u8], ty: Option<&ValueType>) -> anyhow::Result<Value> {
    match ty {
        Some(ValueType::Sequence(_)) => {
            let s = SequenceProto::decode(bytes)?;
            sequence(&s)
        }
        Some(ValueType::Optional(_)) => {
            let o = OptionalProto::decode(bytes)?;
            Ok(Value::Optional(match o.elem_type.unwrap_or(0) {
                0 => None,
                1 => Some(Box::new(Value::Tensor(tensor(
                    o.tensor_value
                        .as_ref()
                        .context("optional tensor without a value")?,
                )?))),
                3 => Some(Box::new(sequence(
                    o.sequence_value
                        .as_ref()
                        .context("optional sequence without a value")?,
                )?)),
                other => bail!("optional of element kind {other} is not supported"),
            }))
        }
        Some(ValueType::Map(..)) => bail!("map values are not supported"),
        _ => Ok(Value::Tensor(tensor(&TensorProto::decode(bytes)?)?)),
    }
}

fn sequence(s: &SequenceProto) -> anyhow::Result<Value> {
    if !s.sequence_values.is_empty() || !s.map_values.is_empty() {
        bail!("sequences of sequences or maps are not supported");
    }
    let ts: Vec<Tensor> = s
        .tensor_values
        .iter()
        .map(tensor)
        .collect::<Result<_, _>>()?;
    let dtype = ts.first().map(|t| t.dtype()).or_else(|| {
        s.tensor_values
            .first()
            .and_then(|t| t.data_type)
            .and_then(DataType::from_onnx)
    });
    Ok(Value::Sequence(dtype, ts))
}
