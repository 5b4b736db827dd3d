//! External tensor data (ONNX's `data_location = EXTERNAL`): reading it from files beside the
//! model, refusing any location that could reach outside the model's folder, and writing it.
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::proto::tensor_proto::DataLocation;
use crate::proto::{ModelProto, StringStringEntryProto, TensorProto};
use crate::{for_each_tensor_mut, FormatError};

fn err(t: &TensorProto, reason: impl Into<String>) -> FormatError {
    FormatError::ExternalData {
        tensor: t.name.clone().unwrap_or_default(),
        reason: reason.into(),
    }
}

/// A `location` must be a plain relative path that stays inside the model's folder: no root, no
/// drive prefix, and no `..` that climbs above the folder at any point.
fn checked_relative(t: &TensorProto, location: &str) -> Result<PathBuf, FormatError> {
    if location.is_empty() {
        return Err(err(t, "empty location"));
    }
    if location.contains('\0') {
        return Err(err(t, "location contains a NUL byte"));
    }
    // Windows-style absolute paths are refused on every platform so a model behaves the same
    // everywhere.
    let bytes = location.as_bytes();
    if location.starts_with('\\') || (bytes.len() >= 2 && bytes[1] == b':') {
        return Err(err(t, format!("location `{location}` is absolute")));
    }
    let p = Path::new(location);
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(err(
                        t,
                        format!("location `{location}` escapes the model's folder"),
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(err(t, format!("location `{location}` is absolute")))
            }
        }
    }
    if depth == 0 {
        return Err(err(t, format!("location `{location}` names no file")));
    }
    Ok(p.to_path_buf())
}

fn parse_u64(t: &TensorProto, key: &str, v: &str) -> Result<u64, FormatError> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| err(t, format!("`{key}` is not a non-negative integer: `{v}`")))
}

/// Replaces every external reference in `model` by the bytes it points to (as `raw_data`).
/// `base_dir` is the folder of the model file.
pub fn resolve_external_data(model: &mut ModelProto, base_dir: &Path) -> Result<(), FormatError> {
    let mut base_canon: Option<PathBuf> = None;
    let mut files: HashMap<PathBuf, File> = HashMap::new();
    for_each_tensor_mut(model, &mut |t: &mut TensorProto| {
        if t.data_location != Some(DataLocation::External as i32) {
            return Ok(());
        }
        let mut location = None;
        let mut offset = 0u64;
        let mut length = None;
        for StringStringEntryProto { key, value } in &t.external_data {
            let value = value.as_deref().unwrap_or("");
            match key.as_deref().unwrap_or("") {
                "location" => location = Some(value.to_string()),
                "offset" => offset = parse_u64(t, "offset", value)?,
                "length" => length = Some(parse_u64(t, "length", value)?),
                _ => {}
            }
        }
        let location = location.ok_or_else(|| err(t, "no `location` entry"))?;
        let rel = checked_relative(t, &location)?;
        if base_canon.is_none() {
            base_canon = Some(base_dir.canonicalize().map_err(|e| {
                err(
                    t,
                    format!("cannot open the model's folder {}: {e}", base_dir.display()),
                )
            })?);
        }
        let base = base_canon.as_ref().expect("set above");
        let full = base.join(&rel).canonicalize().map_err(|e| {
            err(
                t,
                format!("cannot open `{location}` in {}: {e}", base.display()),
            )
        })?;
        // A symbolic link inside the folder may still point elsewhere.
        if !full.starts_with(base) {
            return Err(err(
                t,
                format!("location `{location}` resolves outside the model's folder"),
            ));
        }
        if !files.contains_key(&full) {
            let f =
                File::open(&full).map_err(|e| err(t, format!("cannot open `{location}`: {e}")))?;
            files.insert(full.clone(), f);
        }
        let f = files.get_mut(&full).expect("inserted above");
        let size = f
            .metadata()
            .map_err(|e| err(t, format!("cannot stat `{location}`: {e}")))?
            .len();
        if offset > size {
            return Err(err(
                t,
                format!("offset {offset} is past the end of `{location}` ({size} bytes)"),
            ));
        }
        let length = length.unwrap_or(size - offset);
        if length > size - offset {
            return Err(err(
                t,
                format!(
                    "offset {offset} + length {length} is past the end of `{location}` ({size} bytes)"
                ),
            ));
        }
        let mut buf = vec![0u8; length as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| err(t, format!("cannot read `{location}`: {e}")))?;
        t.raw_data = Some(buf.into());
        t.external_data.clear();
        t.data_location = None;
        Ok(())
    })
}

/// Moves the `raw_data` of every tensor of at least `min_bytes` into one blob (aligned to 64
/// bytes), rewriting the tensors as external references to `location`. Returns the blob, which
/// the caller writes to `location` beside the model.
pub fn externalize(model: &mut ModelProto, location: &str, min_bytes: usize) -> Vec<u8> {
    let mut blob: Vec<u8> = Vec::new();
    let _ = for_each_tensor_mut::<()>(model, &mut |t| {
        let Some(raw) = t.raw_data.as_ref() else {
            return Ok(());
        };
        if raw.len() < min_bytes {
            return Ok(());
        }
        let pad = (64 - blob.len() % 64) % 64;
        blob.resize(blob.len() + pad, 0);
        let offset = blob.len();
        blob.extend_from_slice(raw);
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v),
        };
        t.external_data = vec![
            entry("location", location.to_string()),
            entry("offset", offset.to_string()),
            entry("length", raw.len().to_string()),
        ];
        t.data_location = Some(DataLocation::External as i32);
        t.raw_data = None;
        Ok(())
    });
    blob
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::GraphProto;

    fn model_with(location: &str, offset: Option<&str>, length: Option<&str>) -> ModelProto {
        let mut ext = vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some(location.into()),
        }];
        if let Some(o) = offset {
            ext.push(StringStringEntryProto {
                key: Some("offset".into()),
                value: Some(o.into()),
            });
        }
        if let Some(l) = length {
            ext.push(StringStringEntryProto {
                key: Some("length".into()),
                value: Some(l.into()),
            });
        }
        ModelProto {
            graph: Some(GraphProto {
                initializer: vec![TensorProto {
                    name: Some("w".into()),
                    dims: vec![2],
                    data_type: Some(1),
                    data_location: Some(DataLocation::External as i32),
                    external_data: ext,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn resolve(dir: &Path, m: &mut ModelProto) -> Result<(), String> {
        resolve_external_data(m, dir).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_range_and_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("w.bin"), [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        std::fs::write(root.path().join("secret.bin"), [9u8; 8]).unwrap();

        let mut m = model_with("w.bin", Some("2"), Some("8"));
        resolve(&dir, &mut m).unwrap();
        let t = &m.graph.as_ref().unwrap().initializer[0];
        assert_eq!(t.raw_data.as_deref(), Some(&[2u8, 3, 4, 5, 6, 7, 8, 9][..]));
        assert!(t.external_data.is_empty());

        for bad in [
            "../secret.bin",
            "sub/../../secret.bin",
            "/etc/passwd",
            "C:\\x.bin",
            "\\\\server\\x",
            "",
            ".",
        ] {
            let mut m = model_with(bad, None, None);
            let e = resolve(&dir, &mut m).unwrap_err();
            assert!(e.contains("tensor `w`"), "{bad}: {e}");
        }
        let mut m = model_with("w.bin", Some("4"), Some("100"));
        assert!(resolve(&dir, &mut m).unwrap_err().contains("past the end"));
        let mut m = model_with("w.bin", Some("-1"), None);
        assert!(resolve(&dir, &mut m).unwrap_err().contains("offset"));
        let mut m = model_with("missing.bin", None, None);
        assert!(resolve(&dir, &mut m).unwrap_err().contains("cannot open"));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlink_out_of_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(root.path().join("secret.bin"), [9u8; 8]).unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.bin"), dir.join("link.bin")).unwrap();
        let mut m = model_with("link.bin", None, None);
        assert!(resolve(&dir, &mut m)
            .unwrap_err()
            .contains("outside the model's folder"));
    }

    #[test]
    fn externalize_then_resolve_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = model_with("x", None, None);
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.data_location = None;
        t.external_data.clear();
        t.raw_data = Some(vec![7u8; 8].into());
        let original = m.clone();
        let blob = externalize(&mut m, "m.data", 4);
        std::fs::write(dir.path().join("m.data"), &blob).unwrap();
        assert!(m.graph.as_ref().unwrap().initializer[0].raw_data.is_none());
        resolve(dir.path(), &mut m).unwrap();
        assert_eq!(m, original);
    }
}
