//! The wgpu provider from the command line: `--ep wgpu,cpu` names the adapter and puts the
//! built-in model's convolutions on it, options are checked, and an adapter that is not there
//! is a clear error (never a silent fall-back to the CPU).
use std::process::Command;

fn kiln(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("kiln runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn partition_names_the_adapter_and_claims_the_convolutions() {
    let (code, out, err) = kiln(&["partition", "--ep", "wgpu,cpu", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        j["devices"]["wgpu"].as_str().is_some_and(|d| !d.is_empty()),
        "{out}"
    );
    assert!(j["nodes_per_ep"]["wgpu"].as_u64().unwrap() > 10, "{out}");
    let on_gpu: Vec<&str> = j["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ep"] == "wgpu")
        .flat_map(|p| {
            p["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
        })
        .collect();
    assert!(!on_gpu.is_empty());
    // Shape arithmetic stays on the CPU, with its reason.
    let rejected = j["rejected"].as_array().unwrap();
    assert!(rejected
        .iter()
        .any(|r| r["op"] == "Shape" && r["reason"].as_str().unwrap().contains("no kernel")));
}

#[test]
fn run_matches_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for ep in ["wgpu,cpu", "cpu"] {
        let d = dir.path().join(ep.replace(',', "_"));
        let (code, _, err) = kiln(
            &[
                "run",
                "--ep",
                ep,
                "--shape",
                "images=1,3,64,64",
                "--out",
                d.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        outs.push(d);
    }
    let read = |d: &std::path::Path| {
        let mut files: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect::<Vec<_>>()
    };
    let (a, b) = (read(&outs[0]), read(&outs[1]));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len());
        // .npy float32 payloads after the header: compare within tolerance.
        let start = x.len() - (x.len() - 128) / 4 * 4;
        for (p, q) in x[start..].chunks(4).zip(y[start..].chunks(4)) {
            let (p, q) = (
                f32::from_le_bytes(p.try_into().unwrap()),
                f32::from_le_bytes(q.try_into().unwrap()),
            );
            assert!((p - q).abs() <= 1e-4 + 1e-3 * q.abs(), "{p} vs {q}");
        }
    }
}

#[test]
fn missing_adapter_and_bad_options_are_errors() {
    let (code, _, err) = kiln(
        &["partition", "--ep", "wgpu,cpu"],
        &[("KILN_WGPU_ADAPTER", "no-such-gpu-anywhere")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error:") && err.contains("no-such-gpu-anywhere"),
        "{err}"
    );
    let (code, _, err) = kiln(&["partition", "--ep", "wgpu:fused_conv=maybe,cpu"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("fused_conv=maybe"), "{err}");
    let (code, _, err) = kiln(&["partition", "--ep", "wgpu:colour=blue,cpu"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown option 'colour'"), "{err}");
}
