//! `kiln run`: runs a model once on inputs from `.npy` files or seeded pseudo-random values, and
//! writes each output to `DIR/<name>.npy`.
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use kiln_ir::{DataType, Dim};
use kiln_ops::{Data, Tensor, Value};
use kiln_runtime::Session;
use serde_json::json;

use crate::args::RunArgs;
use crate::npy;
use crate::report::{self, parse_shape_arg};

/// A small fixed pseudo-random generator (xorshift64*), so inputs are the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Seeded inputs: floats uniform in [0, 1), integers in [0, 10), bools fair.
pub fn random_tensor(dtype: DataType, shape: Vec<usize>, seed: u64) -> anyhow::Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut r = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let data = match dtype {
        DataType::F32 => Data::F32((0..n).map(|_| r.unit() as f32).collect()),
        DataType::F64 => Data::F64((0..n).map(|_| r.unit()).collect()),
        DataType::F16 => Data::F16((0..n).map(|_| half::f16::from_f64(r.unit())).collect()),
        DataType::Bool => Data::Bool((0..n).map(|_| r.next() & 1 == 1).collect()),
        dt if dt.is_int() => {
            let v: Vec<i64> = (0..n).map(|_| (r.next() % 10) as i64).collect();
            let t = Tensor::from_vec(shape.clone(), v);
            return cast_ints(&t, dt);
        }
        other => bail!("cannot make random {other} inputs; pass --input"),
    };
    Ok(Tensor::new(shape, data))
}

fn cast_ints(t: &Tensor, dt: DataType) -> anyhow::Result<Tensor> {
    let v = t.to_i64s().map_err(anyhow::Error::msg)?;
    let data = match dt {
        DataType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
        DataType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
        DataType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DataType::I64 => Data::I64(v),
        DataType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
        DataType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
        DataType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
        DataType::U64 => Data::U64(v.iter().map(|&x| x as u64).collect()),
        other => bail!("cannot make random {other} inputs"),
    };
    Ok(Tensor::new(t.shape.clone(), data))
}

/// The inputs of one run: files given with `--input`, the rest seeded pseudo-random values
/// shaped by the model's declared dims and `--shape`.
pub fn inputs(
    session: &Session,
    input_args: &[String],
    shape_args: &[String],
) -> anyhow::Result<Vec<(String, Value)>> {
    let mut files: HashMap<String, String> = HashMap::new();
    for a in input_args {
        let (name, file) = a
            .split_once('=')
            .with_context(|| format!("--input '{a}' is not NAME=FILE.npy"))?;
        files.insert(name.to_string(), file.to_string());
    }
    let mut shapes: HashMap<String, Vec<Dim>> = HashMap::new();
    for s in shape_args {
        let (name, dims) = parse_shape_arg(s)?;
        shapes.insert(name, dims);
    }
    for name in files.keys().chain(shapes.keys()) {
        if !session.inputs().iter().any(|i| &i.name == name) {
            if session.overridable_inputs().any(|i| &i.name == name) && files.contains_key(name) {
                continue;
            }
            bail!("the model has no input named '{name}'");
        }
    }
    let mut out = Vec::new();
    // Overridable initializers keep their values unless a file replaces them.
    for spec in session.overridable_inputs() {
        if let Some(f) = files.get(&spec.name) {
            out.push((spec.name.clone(), Value::Tensor(npy::read(Path::new(f))?)));
        }
    }
    for (i, spec) in session.inputs().iter().enumerate() {
        if let Some(f) = files.get(&spec.name) {
            out.push((spec.name.clone(), Value::Tensor(npy::read(Path::new(f))?)));
            continue;
        }
        let dims = shapes
            .get(&spec.name)
            .cloned()
            .or_else(|| spec.shape.clone())
            .with_context(|| {
                format!(
                    "input '{}' has no declared shape; give --shape {}=D0,D1,...",
                    spec.name, spec.name
                )
            })?;
        let mut shape = Vec::with_capacity(dims.len());
        for (k, d) in dims.iter().enumerate() {
            match d.known() {
                Some(v) if v >= 0 => shape.push(v as usize),
                _ => bail!(
                    "input '{}' has symbolic dimension {k} ('{d}'); give --shape {}=D0,D1,...",
                    spec.name,
                    spec.name
                ),
            }
        }
        let dtype = spec
            .dtype
            .with_context(|| format!("input '{}' has no declared element type", spec.name))?;
        let bytes = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| dtype.storage_bytes(n));
        if let Some(limit) = session.memory_limit() {
            if bytes.is_none_or(|b| b as u64 > limit.bytes) {
                bail!(
                    "input '{}' of shape {:?} ({dtype}) needs {}, over the memory limit of {limit}",
                    spec.name,
                    shape,
                    bytes.map_or("more than 2^64 bytes".into(), |b| {
                        kiln_runtime::memory::human(b as u64)
                    }),
                );
            }
        }
        out.push((
            spec.name.clone(),
            Value::Tensor(random_tensor(dtype, shape, i as u64 + 1)?),
        ));
    }
    Ok(out)
}

/// `name` made safe as a file name: characters outside `[A-Za-z0-9._-]` become `_`.
pub fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A map, or a sequence of maps (ZipMap's output), as JSON: one object per map, keys as strings.
fn maps_json(v: &Value) -> anyhow::Result<serde_json::Value> {
    let one = |m: &kiln_ops::MapValue| -> anyhow::Result<serde_json::Value> {
        let keys: Vec<String> = match &m.keys.data {
            kiln_ops::Data::Str(k) => k.clone(),
            _ => m
                .keys
                .to_i64s()
                .map_err(anyhow::Error::msg)?
                .iter()
                .map(|k| k.to_string())
                .collect(),
        };
        let vals = m.values.to_f64s().map_err(anyhow::Error::msg)?;
        Ok(serde_json::Value::Object(
            keys.into_iter()
                .zip(vals)
                .map(|(k, v)| (k, json!(v)))
                .collect(),
        ))
    };
    Ok(match v {
        Value::Map(m) => one(m)?,
        Value::MapSequence(ms) => {
            serde_json::Value::Array(ms.iter().map(one).collect::<anyhow::Result<_>>()?)
        }
        _ => bail!("not a map"),
    })
}

fn write_maps(dir: Option<&Path>, out_name: &str, v: &Value) -> anyhow::Result<serde_json::Value> {
    let kind = if matches!(v, Value::Map(_)) {
        "map"
    } else {
        "sequence<map>"
    };
    let mut entry = json!({"name": out_name, "kind": kind});
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let f = dir.join(format!("{}.json", file_name(out_name)));
        kiln_onnx::write_atomically(&f, serde_json::to_string(&maps_json(v)?)?.as_bytes())?;
        entry["file"] = json!(f.display().to_string());
    }
    Ok(entry)
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let (model, name) = report::load(a.model.as_deref())?;
    let session = report::session(model, &a).with_context(|| name.clone())?;
    let feeds = inputs(&session, &a.input, &a.shape).with_context(|| name.clone())?;
    let start = Instant::now();
    let (outs, stats) = session
        .run_with_stats(feeds)
        .with_context(|| name.clone())?;
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    let mut listed = Vec::new();
    for (out_name, v) in &outs {
        let t = match v {
            Value::Tensor(t) => t,
            Value::Map(_) | Value::MapSequence(_) => {
                listed.push(write_maps(a.out.as_deref(), out_name, v)?);
                continue;
            }
            _ => bail!(
                "{name}: output '{out_name}' is a sequence or optional; kiln run writes tensors and maps only"
            ),
        };
        let mut entry = json!({"name": out_name, "dtype": t.dtype().name(), "shape": t.shape});
        if let Some(dir) = &a.out {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let f = dir.join(format!("{}.npy", file_name(out_name)));
            kiln_onnx::write_atomically(&f, &npy::encode(t)?)?;
            entry["file"] = json!(f.display().to_string());
        }
        listed.push(entry);
    }
    if a.json {
        let out = json!({
            "outputs": listed,
            "elapsed_ms": elapsed,
            "peak_intermediate_bytes": stats.peak_bytes,
            "total_intermediate_bytes": stats.total_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for e in &listed {
            println!(
                "{} {} {} {}",
                e["name"].as_str().unwrap_or(""),
                e["dtype"].as_str().or(e["kind"].as_str()).unwrap_or(""),
                e["shape"],
                e.get("file").and_then(|f| f.as_str()).unwrap_or("")
            );
        }
        println!(
            "ran in {elapsed:.2} ms; intermediates: peak {:.1} MiB alive of {:.1} MiB produced",
            stats.peak_bytes as f64 / 1048576.0,
            stats.total_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}
