//! Bad input gives an `error:` line naming what is wrong and a non-zero exit: never a panic
//! (exit 101), never a partial output file.
use std::path::Path;

use kiln_onnx::proto::{
    tensor_proto::DataLocation, OperatorSetIdProto, StringStringEntryProto, TensorProto,
};

mod common;
use common::*;

/// Runs `kiln inspect --shapes` and `kiln optimize --level disabled` on `path` and checks that
/// both fail cleanly with every phrase of `expect` in the error, leaving no output file.
fn assert_refused(path: &Path, expect: &[&str]) {
    let p = path.to_str().unwrap();
    let out = path.with_extension("out.onnx");
    let o = out.to_str().unwrap();
    for args in [
        vec!["inspect", p, "--shapes"],
        vec!["optimize", p, "-o", o, "--level", "disabled"],
    ] {
        let (code, _, err) = kiln(&args);
        assert_eq!(code, 1, "{args:?}: exit {code}, stderr: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: expected '{e}' in: {err}");
        }
        assert!(!out.exists(), "a partial output was left behind");
    }
}

#[test]
fn the_good_model_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "good.onnx", &good_model());
    let (code, out, err) = kiln(&["inspect", p.to_str().unwrap(), "--json", "--shapes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"Relu\": 2"), "{out}");
}

#[test]
fn empty_random_and_truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert_refused(&empty, &["empty.onnx", "empty"]);

    let random = dir.path().join("random.onnx");
    let bytes: Vec<u8> = (0..10_000u64)
        .map(|i| (i.wrapping_mul(0x9E3779B97F4A7C15) >> 56) as u8)
        .collect();
    std::fs::write(&random, &bytes).unwrap();
    assert_refused(&random, &["random.onnx"]);

    let full = kiln_onnx::encode_model(&good_model());
    for cut in [1, 7, full.len() / 3, full.len() / 2, full.len() - 1] {
        let p = dir.path().join(format!("cut{cut}.onnx"));
        std::fs::write(&p, &full[..cut]).unwrap();
        assert_refused(&p, &[&format!("cut{cut}.onnx")]);
    }
    let missing = dir.path().join("missing.onnx");
    assert_refused(&missing, &["missing.onnx", "cannot read"]);
}

#[test]
fn graph_errors_name_the_node() {
    let dir = tempfile::tempdir().unwrap();

    let mut m = good_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "t2".into(); // a reads b's output: a cycle
    let p = write(dir.path(), "cycle.onnx", &m);
    assert_refused(&p, &["cycle", "node '"]);

    let mut m = good_model();
    m.graph.as_mut().unwrap().node[1].input[0] = "nowhere".into();
    let p = write(dir.path(), "dangling.onnx", &m);
    assert_refused(&p, &["node 'b' (Relu)", "'nowhere'"]);

    let mut m = good_model();
    m.graph.as_mut().unwrap().node[1].output[0] = "t1".into();
    let p = write(dir.path(), "twice.onnx", &m);
    assert_refused(&p, &["'t1'", "two producers", "node 'b' (Relu)"]);

    let mut m = good_model();
    m.graph.as_mut().unwrap().output[0].name = Some("ghost".into());
    let p = write(dir.path(), "ghost.onnx", &m);
    assert_refused(&p, &["'ghost'"]);

    let mut m = good_model();
    m.graph.as_mut().unwrap().node[0].op_type = None;
    let p = write(dir.path(), "noop.onnx", &m);
    assert_refused(&p, &["node 'a'", "op_type"]);
}

#[test]
fn tensor_errors_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Box<dyn Fn(&mut TensorProto)>, &[&str])> = vec![
        (
            "rawlen",
            Box::new(|t| t.raw_data = Some(vec![0u8; 23].into())),
            &["initializer 'w'", "23 bytes", "needs 24"],
        ),
        (
            "negdim",
            Box::new(|t| t.dims = vec![-2, 3]),
            &["initializer 'w'", "negative"],
        ),
        (
            "hugedim",
            Box::new(|t| t.dims = vec![i64::MAX, 4]),
            &["initializer 'w'", "more elements"],
        ),
        (
            "badtype",
            Box::new(|t| t.data_type = Some(77)),
            &["initializer 'w'", "77"],
        ),
        (
            "typed",
            Box::new(|t| {
                t.raw_data = None;
                t.float_data = vec![1.0; 5];
            }),
            &["initializer 'w'", "float_data"],
        ),
    ];
    for (name, edit, expect) in cases {
        let mut m = good_model();
        edit(&mut m.graph.as_mut().unwrap().initializer[0]);
        let p = write(dir.path(), &format!("{name}.onnx"), &m);
        assert_refused(&p, expect);
    }
    // A negative dim in a declared type means "unknown" (as in ONNX Runtime), not an error.
    let mut m = good_model();
    m.graph.as_mut().unwrap().input[0] = vi("x", &[-1, 3]);
    let p = write(dir.path(), "negtype.onnx", &m);
    let (code, out, err) = kiln(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        j["inputs"][0]["shape"],
        serde_json::json!([null, 3]),
        "{out}"
    );
}

#[test]
fn external_data_outside_the_folder_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [1u8; 24]).unwrap();
    std::fs::write(dir.join("w.bin"), [0u8; 24]).unwrap();
    for (name, location) in [
        ("escape", "../secret.bin"),
        ("absolute", "/etc/hostname"),
        ("missing", "nothere.bin"),
    ] {
        let mut m = good_model();
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data = None;
        t.data_location = Some(DataLocation::External as i32);
        t.external_data = vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some(location.into()),
        }];
        let p = write(&dir, &format!("{name}.onnx"), &m);
        assert_refused(&p, &["tensor `w`", "external data"]);
    }
    // Inside the folder it loads.
    let mut m = good_model();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.raw_data = None;
    t.data_location = Some(DataLocation::External as i32);
    t.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some("w.bin".into()),
    }];
    let p = write(&dir, "inside.onnx", &m);
    let (code, _, err) = kiln(&["inspect", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn shape_errors_name_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = good_model();
    // Add of [2,3] and a [4,5] weight cannot broadcast.
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.dims = vec![4, 5];
    t.raw_data = Some(vec![0u8; 80].into());
    let p = write(dir.path(), "broadcast.onnx", &m);
    let (code, _, err) = kiln(&["inspect", p.to_str().unwrap(), "--shapes"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("node 'c' (Add)") && err.contains("broadcast"),
        "{err}"
    );
}

#[test]
fn optimize_into_a_missing_folder_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "good.onnx", &good_model());
    let out = dir.path().join("no/such/dir/out.onnx");
    let (code, _, err) = kiln(&[
        "optimize",
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--level",
        "disabled",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: ") && err.contains("out.onnx"),
        "{err}"
    );
    assert!(!out.exists());
}

/// One domain imported twice at one version (skl2onnx does this; `""` and `ai.onnx` name the
/// same domain) loads as one import; two different versions of one domain are refused.
#[test]
fn opset_imported_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = good_model();
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("ai.onnx".into()),
        version: Some(17),
    });
    let p = write(dir.path(), "twice.onnx", &m);
    let (code, out, err) = kiln(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["opsets"], serde_json::json!({"": 17}), "{out}");
    let mut m = good_model();
    m.opset_import.push(OperatorSetIdProto {
        domain: Some(String::new()),
        version: Some(13),
    });
    let p = write(dir.path(), "conflict.onnx", &m);
    assert_refused(&p, &["imported twice", "versions 17 and 13"]);
}

/// Absurd input sizes fail before anything is allocated: an `error:` line and exit 1, never a
/// signal (an abort or an OOM kill); a run whose intermediates exceed `--memory-limit` names
/// the node whose output crosses it.
#[test]
fn memory_limits_refuse_before_allocating() {
    for shape in ["images=1,3,100000,100000", "images=1,3,20000,20000"] {
        let (code, _, err) = kiln(&["run", "--shape", shape, "--memory-limit", "4G"]);
        assert_eq!(code, 1, "{shape}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("over the memory limit of 4.0 GiB"),
            "{err}"
        );
    }
    let (code, _, err) = kiln(&["run", "--shape", "images=1,3,100000,100000"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("input 'images'") && err.contains("111.8 GiB"),
        "{err}"
    );
    let (code, _, err) = kiln(&[
        "run",
        "--shape",
        "images=1,3,640,640",
        "--memory-limit",
        "10M",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("node '") && err.contains("its output '"),
        "{err}"
    );
    let (code, _, err) = kiln(&[
        "run",
        "--shape",
        "images=1,3,64,64",
        "--memory-limit",
        "lots",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--memory-limit"), "{err}");
    let (code, _, err) = kiln(&[
        "run",
        "--shape",
        "images=1,3,64,64",
        "--memory-limit",
        "64M",
    ]);
    assert_eq!(code, 0, "{err}");
}
