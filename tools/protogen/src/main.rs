//! Regenerates `crates/kiln-onnx/src/generated/onnx.rs` from the vendored `onnx.proto`, and
//! `crates/kiln-serve/src/generated/inference.rs` (messages and the tonic server) from the
//! Open Inference Protocol's `grpc_predict_v2.proto`. Only maintainers who change a proto run
//! this (it needs `protoc`); the output is committed so that building kiln never needs `protoc`.
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto_dir = root.join("crates/kiln-onnx/proto");
    let out = root.join("crates/kiln-onnx/src/generated");
    std::fs::create_dir_all(&out).expect("create output folder");
    prost_build::Config::new()
        .out_dir(&out)
        .bytes(["."])
        .compile_protos(
            &[proto_dir.join("onnx.proto"), proto_dir.join("onnx-data.proto")],
            &[proto_dir],
        )
        .expect("protoc failed");
    println!("wrote {}", out.display());

    let proto_dir = root.join("crates/kiln-serve/proto");
    let out = root.join("crates/kiln-serve/src/generated");
    std::fs::create_dir_all(&out).expect("create output folder");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&out)
        .compile_protos(&[proto_dir.join("grpc_predict_v2.proto")], &[proto_dir])
        .expect("protoc failed");
    println!("wrote {}", out.display());
}
