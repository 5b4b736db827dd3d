//! Fuzzes what kiln does with an untrusted file: decode, build the IR (every reference checked),
//! infer shapes, and save again. Errors are fine; panics, hangs and inconsistent graphs are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut model) = kiln_ir::Model::from_bytes(data) else {
        return;
    };
    model
        .graph
        .check_consistency()
        .expect("a loaded graph is consistent");
    let _ = kiln_ops::infer_shapes(&mut model);
    // What kiln saves, kiln loads back with the same nodes.
    let bytes = kiln_onnx::encode_model(&model.to_proto());
    let again = kiln_ir::Model::from_bytes(&bytes).expect("a saved model loads again");
    assert_eq!(again.graph.node_count(), model.graph.node_count());
});
