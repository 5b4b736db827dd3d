//! String ops: StringNormalizer (stop-word removal and case change, as ONNX Runtime: an
//! element equal to a stop word is dropped; no locale-specific rules or accent stripping).
use kiln_ir::AttrValue;

use crate::kernel::{one, KernelCtx, KernelFn, Result};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "StringNormalizer") => Some(string_normalizer),
        _ => None,
    }
}

fn string_normalizer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let Data::Str(v) = &x.data else {
        return Err(format!("StringNormalizer takes strings, got {}", x.dtype()));
    };
    let two_d = match x.shape.as_slice() {
        [_] => false,
        [1, _] => true,
        s => return Err(format!("StringNormalizer takes [C] or [1, C], got {s:?}")),
    };
    let action = ctx.str_attr("case_change_action").unwrap_or("NONE");
    if !matches!(action, "NONE" | "LOWER" | "UPPER") {
        return Err(format!("unknown case_change_action '{action}'"));
    }
    let sensitive = ctx.int_attr("is_case_sensitive", 0) != 0;
    let stops: Vec<String> = match ctx.attr("stopwords") {
        Some(AttrValue::Strings(s)) => s
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
        Some(_) => return Err("stopwords must be a list of strings".into()),
        None => Vec::new(),
    };
    let fold = |s: &str| {
        if sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let stops: Vec<String> = stops.iter().map(|s| fold(s)).collect();
    let mut out: Vec<String> = v
        .iter()
        .filter(|s| !stops.contains(&fold(s)))
        .map(|s| match action {
            "LOWER" => s.to_lowercase(),
            "UPPER" => s.to_uppercase(),
            _ => s.clone(),
        })
        .collect();
    if out.is_empty() {
        out.push(String::new());
    }
    let shape = if two_d {
        vec![1, out.len()]
    } else {
        vec![out.len()]
    };
    one(Tensor::new(shape, Data::Str(out)))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::run;
    use crate::value::{Data, Tensor};
    use kiln_ir::{AttrValue, Attribute};

    fn strs(shape: &[usize], v: &[&str]) -> Tensor {
        Tensor::new(
            shape.to_vec(),
            Data::Str(v.iter().map(|s| s.to_string()).collect()),
        )
    }

    #[test]
    fn stopwords_and_case() {
        let stops = Attribute {
            name: "stopwords".into(),
            value: AttrValue::Strings(vec!["Monday".as_bytes().to_vec().into()]),
            doc_string: None,
        };
        let attrs = [stops, Attribute::string("case_change_action", "UPPER")];
        let r = run(
            "StringNormalizer",
            &attrs,
            &[strs(&[1, 3], &["monday", "tuesday", "x"])],
        )
        .unwrap();
        assert_eq!(r, strs(&[1, 2], &["TUESDAY", "X"]));
        let r = run("StringNormalizer", &attrs, &[strs(&[1], &["MONDAY"])]).unwrap();
        assert_eq!(r, strs(&[1], &[""]));
    }
}
