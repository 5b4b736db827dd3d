// The second pass of Softmax / LogSoftmax over long rows, one element per thread: the row's
// segment pairs (m, s) combined, then exp(x - M) / S or x - M - log(S).
// P = [n, len, inner, log, seg, segs].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> S: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(idx: u32) {
    let len = P[1];
    let inner = P[2];
    let segs = P[5];
    // The element's row: its position along the axis removed from the index.
    let row = (idx / (len * inner)) * inner + idx % inner;
    // -inf, made at run time (constant folding refuses infinities): -FLT_MAX would stand above
    // a row of -FLT_MAX (a fully masked attention row), whose exponentials would all be 0.
    var m = bitcast<f32>(0xff800000u | (P[1] & 0u));
    for (var k = 0u; k < segs; k = k + 1u) {
        m = max(m, S[2u * (row * segs + k)]);
    }
    var s = 0.0;
    var nan = false;
    for (var k = 0u; k < segs; k = k + 1u) {
        let mk = S[2u * (row * segs + k)];
        let sk = S[2u * (row * segs + k) + 1u];
        nan = nan || (sk != sk);
        if (sk > 0.0) {
            s = s + sk * exp(mk - m);
        }
    }
    let v = X[idx] - m;
    var y = 0.0;
    if (P[3] != 0u) {
        y = v - log(s);
    } else {
        y = exp(v) / s;
    }
    if (nan) {
        y = bitcast<f32>(0x7fc00000u);
    }
    Y[idx] = y;
}
