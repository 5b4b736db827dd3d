// Strided copy over up to 6 dims (Transpose, Slice, Concat, Split, Expand, SpaceToDepth,
// DepthToSpace, Pad's interior): P = [n, rank, src_base, dst_base, dims[6], src_strides[6],
// dst_strides[6]].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(i: u32) {
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
