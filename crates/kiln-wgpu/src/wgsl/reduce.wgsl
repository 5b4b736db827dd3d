// Reductions, one output per thread: P = [n, op (0 sum, 1 mean, 2 max, 3 min, 4 sum of
// squares), out_rank, red_rank, count, out_dims[6], out_strides[6], red_dims[6], red_strides[6]].

fn count() -> u32 {
    return P[0];
}

fn body(idx: u32) {
    let base = out_base(idx);
    let op = P[1];
    let count = P[4];
    var acc = reduce_init(op);
    var nan = false;
    for (var r = 0u; r < count; r = r + 1u) {
        let v = X[elem_offset(base, r)];
        nan = nan || (v != v);
        switch op {
            case 2u: { acc = max(acc, v); }
            case 3u: { acc = min(acc, v); }
            case 4u: { acc = acc + v * v; }
            default: { acc = acc + v; }
        }
    }
    if (op == 1u) {
        acc = acc / f32(max(count, 1u));
    }
    if (nan && (op == 2u || op == 3u)) {
        acc = bitcast<f32>(0x7fc00000u);
    }
    Y[idx] = acc;
}
