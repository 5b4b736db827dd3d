// Strided copy over up to 6 dims (Transpose, Slice, Concat, Split, Expand, SpaceToDepth,
// DepthToSpace, Pad's interior): P = [n, rank, src_base, dst_base, dims[6], src_strides[6],
// dst_strides[6]].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i >= P[0]) {
        return;
    }
    let rank = P[1];
    var rem = i;
    var src = P[2];
    var dst = P[3];
    for (var d = rank; d > 0u; d = d - 1u) {
        let n = P[3u + d];
        let c = rem % n;
        rem = rem / n;
        src = src + c * P[9u + d];
        dst = dst + c * P[15u + d];
    }
    Y[dst] = X[src];
}
