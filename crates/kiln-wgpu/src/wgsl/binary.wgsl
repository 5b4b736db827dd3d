// Broadcasting y = a op b over up to 6 merged dims:
// P = [n, op, rank, dims[6], a_strides[6], b_strides[6]].
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

fn ipow(x: f32, y: f32) -> f32 {
    // pow() is undefined for x < 0; whole exponents keep their sign rule.
    if (y == round(y)) {
        let m = pow(abs(x), y);
        let odd = abs(y % 2.0) == 1.0;
        return select(m, -m, x < 0.0 && odd);
    }
    return pow(x, y);
}

fn apply(a: f32, b: f32, op: u32) -> f32 {
    var y = a + b;
    switch op {
        case 1u: { y = a - b; }
        case 2u: { y = a * b; }
        case 3u: { y = a / b; }
        case 4u: { y = ipow(a, b); }
        case 5u: { y = max(a, b); }
        case 6u: { y = min(a, b); }
        case 7u: { y = select(a * b, a, a >= 0.0); }
        default: {}
    }
    return y;
}

fn count() -> u32 {
    return P[0];
}

fn body(i: u32) {
    let rank = P[2];
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = rank; d > 0u; d = d - 1u) {
        let n = P[2u + d];
        let c = rem % n;
        rem = rem / n;
        ia = ia + c * P[8u + d];
        ib = ib + c * P[14u + d];
    }
    Y[i] = apply(A[ia], B[ib], P[1]);
}
