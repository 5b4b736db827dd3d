// Softmax / LogSoftmax along one axis, one row per thread: P = [rows, len, inner, log].
// Row r reads len elements `inner` apart starting at (r / inner) * len * inner + r % inner.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(r: u32) {
    let len = P[1];
    let inner = P[2];
    let base = (r / inner) * len * inner + r % inner;
    // -inf, made at run time (constant folding refuses infinities): -FLT_MAX would stand above
    // a row of -FLT_MAX (a fully masked attention row), whose exponentials would all be 0.
    var m = bitcast<f32>(0xff800000u | (P[1] & 0u));
    for (var i = 0u; i < len; i = i + 1u) {
        m = max(m, X[base + i * inner]);
    }
    var s = 0.0;
    for (var i = 0u; i < len; i = i + 1u) {
        s = s + exp(X[base + i * inner] - m);
    }
    for (var i = 0u; i < len; i = i + 1u) {
        let v = X[base + i * inner] - m;
        if (P[3] != 0u) {
            Y[base + i * inner] = v - log(s);
        } else {
            Y[base + i * inner] = exp(v) / s;
        }
    }
}
