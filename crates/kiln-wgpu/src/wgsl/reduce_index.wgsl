// Where a reduction reads, shared by the per-output and per-workgroup reductions: P = [n, op,
// out_rank, red_rank, count, out_dims[6], out_strides[6], red_dims[6], red_strides[6], ...].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

// The offset in X of output `o`'s first element.
fn out_base(o: u32) -> u32 {
    var rem = o;
    var base = 0u;
    for (var d = P[2]; d > 0u; d = d - 1u) {
        let n = P[4u + d];
        base = base + (rem % n) * P[10u + d];
        rem = rem / n;
    }
    return base;
}

// The offset in X of the `r`-th reduced element of the output at `base`.
fn elem_offset(base: u32, r: u32) -> u32 {
    var rr = r;
    var off = base;
    for (var d = P[3]; d > 0u; d = d - 1u) {
        let n = P[16u + d];
        off = off + (rr % n) * P[22u + d];
        rr = rr / n;
    }
    return off;
}

// Where max and min start: -inf and +inf (made at run time: constant folding refuses
// infinities); sums start at 0.
fn reduce_init(op: u32) -> f32 {
    if (op == 2u) {
        return bitcast<f32>(0xff800000u | (op & 0u));
    } else if (op == 3u) {
        return bitcast<f32>(0x7f800000u | (op & 0u));
    }
    return 0.0;
}
