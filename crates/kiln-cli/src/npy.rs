//! NumPy `.npy` files (format versions 1 to 3, little-endian, C order): reading inputs and
//! writing outputs of `kiln run`. Strings are NumPy's fixed-width unicode (`<U{n}`, UTF-32
//! code points padded with zeros); object arrays need pickle and are refused.
use std::path::Path;

use anyhow::{bail, Context};
use kiln_ir::DataType;
use kiln_ops::Tensor;

fn descr(dt: DataType) -> Option<&'static str> {
    Some(match dt {
        DataType::F32 => "<f4",
        DataType::F64 => "<f8",
        DataType::F16 => "<f2",
        DataType::I8 => "|i1",
        DataType::I16 => "<i2",
        DataType::I32 => "<i4",
        DataType::I64 => "<i8",
        DataType::U8 => "|u1",
        DataType::U16 => "<u2",
        DataType::U32 => "<u4",
        DataType::U64 => "<u8",
        DataType::Bool => "|b1",
        _ => return None,
    })
}

/// Encodes a tensor as `.npy` bytes.
pub fn encode(t: &Tensor) -> anyhow::Result<Vec<u8>> {
    let strings = match &t.data {
        kiln_ops::Data::Str(v) => Some(v),
        _ => None,
    };
    let width = strings.map_or(0, |v| {
        v.iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            .max(1)
    });
    let d = match (strings, descr(t.dtype())) {
        (Some(_), _) => format!("<U{width}"),
        (None, Some(d)) => d.to_string(),
        (None, None) => bail!("{} tensors cannot be written as .npy", t.dtype()),
    };
    let shape = match t.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape[0]),
        _ => format!(
            "({})",
            t.shape
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{d}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    if let Some(v) = strings {
        for s in v {
            let mut n = 0;
            for c in s.chars() {
                out.extend_from_slice(&(c as u32).to_le_bytes());
                n += 1;
            }
            out.resize(out.len() + 4 * (width - n), 0);
        }
        return Ok(out);
    }
    match t.to_ir().data {
        kiln_ir::TensorData::Raw(b) => out.extend_from_slice(&b),
        kiln_ir::TensorData::Strings(_) => bail!("string tensors cannot be written as .npy"),
    }
    Ok(out)
}

fn field<'a>(header: &'a str, key: &str) -> anyhow::Result<&'a str> {
    let pat = format!("'{key}':");
    let at = header
        .find(&pat)
        .with_context(|| format!("header has no '{key}'"))?;
    Ok(header[at + pat.len()..].trim_start())
}

/// Decodes `.npy` bytes.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!(".npy format version {v} is not supported"),
    };
    let header = bytes
        .get(start..start + hlen)
        .context("truncated .npy header")?;
    let header = std::str::from_utf8(header).context(".npy header is not text")?;
    let d = field(header, "descr")?;
    let d = d.trim_start_matches(['\'', '"']);
    let d = &d[..d.find(['\'', '"']).context("bad descr")?];
    if field(header, "fortran_order")?.starts_with("True") {
        bail!("Fortran-order arrays are not supported; save with np.ascontiguousarray");
    }
    let s = field(header, "shape")?;
    let open = s.find('(').context("bad shape")? + 1;
    let s = &s[open..open + s[open..].find(')').context("bad shape")?];
    let shape: Vec<usize> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<usize>()
                .with_context(|| format!("bad dimension '{x}'"))
        })
        .collect::<anyhow::Result<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .context("shape too large")?;
    let body = &bytes[start + hlen..];
    if let Some(w) = d.strip_prefix("<U").or_else(|| d.strip_prefix("|U")) {
        return decode_strings(body, w, shape, n);
    }
    let dt = match d {
        "<f4" => DataType::F32,
        "<f8" => DataType::F64,
        "<f2" => DataType::F16,
        "|i1" | "<i1" => DataType::I8,
        "<i2" => DataType::I16,
        "<i4" => DataType::I32,
        "<i8" => DataType::I64,
        "|u1" | "<u1" => DataType::U8,
        "<u2" => DataType::U16,
        "<u4" => DataType::U32,
        "<u8" => DataType::U64,
        "|b1" => DataType::Bool,
        "|O" => bail!("object arrays need pickle; save strings as a fixed-width unicode array (dtype 'U')"),
        other => bail!("dtype '{other}' is not supported (little-endian numbers, bool and unicode strings only)"),
    };
    let want = dt.storage_bytes(n).context("shape too large")?;
    if body.len() != want {
        bail!(
            "data has {} bytes, shape {shape:?} of {dt} needs {want}",
            body.len()
        );
    }
    let ir = kiln_ir::Tensor::from_raw(dt, shape, body.to_vec().into())?;
    Ok(Tensor::from_ir(&ir))
}

fn decode_strings(body: &[u8], width: &str, shape: Vec<usize>, n: usize) -> anyhow::Result<Tensor> {
    let w: usize = width
        .parse()
        .with_context(|| format!("bad string width '{width}'"))?;
    if n == 0 {
        return Ok(Tensor::new(shape, kiln_ops::Data::Str(Vec::new())));
    }
    if w == 0 {
        bail!("zero-width strings are not supported");
    }
    let item = w.checked_mul(4).context("string width too large")?;
    let want = n.checked_mul(item).context("shape too large")?;
    if body.len() != want {
        bail!(
            "data has {} bytes, {n} strings of {w} characters need {want}",
            body.len()
        );
    }
    let mut out = Vec::with_capacity(n);
    for item in body.chunks(item) {
        let mut s = String::new();
        for c in item.chunks(4) {
            let code = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if code == 0 {
                break;
            }
            s.push(char::from_u32(code).with_context(|| format!("{code:#x} is not a character"))?);
        }
        out.push(s);
    }
    Ok(Tensor::new(shape, kiln_ops::Data::Str(out)))
}

pub fn read(path: &Path) -> anyhow::Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in [
            Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]),
            Tensor::from_vec(vec![3], vec![1i64, -2, 3]),
            Tensor::from_vec(vec![], vec![true]),
            Tensor::new(
                vec![3],
                kiln_ops::Data::Str(vec!["cat".into(), "".into(), "émû".into()]),
            ),
        ] {
            let b = encode(&t).unwrap();
            assert_eq!(decode(&b).unwrap(), t);
        }
        assert!(decode(b"hello").is_err());
    }
}
