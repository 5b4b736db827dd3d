//! Optional values: Optional, OptionalHasElement, OptionalGetElement.
use crate::kernel::{KernelCtx, KernelFn, Result};
use crate::value::{Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "Optional" => optional,
        "OptionalHasElement" => has_element,
        "OptionalGetElement" => get_element,
        _ => return None,
    })
}

fn optional(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let v = ctx.inputs.first().copied().flatten().cloned();
    Ok(vec![Value::Optional(v.map(Box::new))])
}

fn has_element(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let has = match ctx.inputs.first().copied().flatten() {
        None | Some(Value::Optional(None)) => false,
        Some(_) => true,
    };
    Ok(vec![Value::Tensor(Tensor::scalar(has))])
}

fn get_element(ctx: &KernelCtx) -> Result<Vec<Value>> {
    match ctx.value(0)? {
        Value::Optional(Some(v)) => Ok(vec![(**v).clone()]),
        Value::Optional(None) => Err("the optional input is empty".into()),
        other => Ok(vec![other.clone()]),
    }
}
