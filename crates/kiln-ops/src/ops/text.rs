//! String ops: StringNormalizer (stop-word removal and case change, as ONNX Runtime: an
//! element equal to a stop word is dropped; no locale-specific rules or accent stripping),
//! StringConcat (broadcasting), StringSplit (Python's `str.split` semantics, padded with empty
//! strings) and RegexFullMatch (RE2 syntax, which the `regex` crate shares for what RE2 allows).
use kiln_ir::AttrValue;

use crate::kernel::{one, zip_broadcast, KernelCtx, KernelFn, Result};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "StringNormalizer") => Some(string_normalizer),
        ("", "StringConcat") => Some(string_concat),
        ("", "StringSplit") => Some(string_split),
        ("", "RegexFullMatch") => Some(regex_full_match),
        _ => None,
    }
}

fn strings<'a>(ctx: &KernelCtx<'a>, i: usize) -> Result<&'a [String]> {
    match &ctx.tensor(i)?.data {
        Data::Str(v) => Ok(v),
        other => Err(format!(
            "{} takes strings, input {i} is {}",
            ctx.op_type,
            other.dtype()
        )),
    }
}

fn string_concat(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, y) = (strings(ctx, 0)?, strings(ctx, 1)?);
    let (xs, ys) = (&ctx.tensor(0)?.shape, &ctx.tensor(1)?.shape);
    let ix: Vec<usize> = (0..x.len()).collect();
    let iy: Vec<usize> = (0..y.len()).collect();
    let (shape, pairs) = zip_broadcast(&ix, xs, &iy, ys, |a, b| (a, b))?;
    let out = pairs
        .into_iter()
        .map(|(a, b)| format!("{}{}", x[a], y[b]))
        .collect();
    one(Tensor::new(shape, Data::Str(out)))
}

/// Splits like Python: on `delim`, or on runs of whitespace (trimmed) when there is none; at
/// most `maxsplit` splits when it is given.
fn split_one(s: &str, delim: Option<&str>, maxsplit: Option<usize>) -> Vec<String> {
    let limit = maxsplit.map_or(usize::MAX, |m| m.saturating_add(1));
    match delim {
        Some(d) => s.splitn(limit, d).map(str::to_string).collect(),
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start();
            while !rest.is_empty() {
                if out.len() + 1 == limit {
                    out.push(rest.to_string());
                    break;
                }
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            out
        }
    }
}

fn string_split(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = strings(ctx, 0)?;
    let delim = ctx.str_attr("delimiter").filter(|d| !d.is_empty());
    let maxsplit = match ctx.attrs.iter().any(|a| a.name == "maxsplit") {
        true => Some(
            usize::try_from(ctx.int_attr("maxsplit", 0)).map_err(|_| "maxsplit must be >= 0")?,
        ),
        false => None,
    };
    let parts: Vec<Vec<String>> = x.iter().map(|s| split_one(s, delim, maxsplit)).collect();
    let width = parts.iter().map(Vec::len).max().unwrap_or(0);
    let counts: Vec<i64> = parts.iter().map(|p| p.len() as i64).collect();
    let mut flat = Vec::with_capacity(parts.len() * width);
    for mut p in parts {
        p.resize(width, String::new());
        flat.extend(p);
    }
    let shape = &ctx.tensor(0)?.shape;
    let mut yshape = shape.clone();
    yshape.push(width);
    Ok(vec![
        Value::Tensor(Tensor::new(yshape, Data::Str(flat))),
        Value::Tensor(Tensor::from_vec(shape.clone(), counts)),
    ])
}

fn regex_full_match(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = strings(ctx, 0)?;
    let pat = ctx
        .str_attr("pattern")
        .ok_or("the 'pattern' attribute is required")?;
    let re = regex::Regex::new(&format!(r"\A(?:{pat})\z"))
        .map_err(|e| format!("pattern '{pat}' is not a valid regex: {e}"))?;
    let out: Vec<bool> = x.iter().map(|s| re.is_match(s)).collect();
    one(Tensor::from_vec(ctx.tensor(0)?.shape.clone(), out))
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
