// Per-channel y = x * scale[c] + shift[c] (BatchNormalization in inference):
// P = [n, channels, inner].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> S: array<f32>;
@group(0) @binding(3) var<storage, read> T: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(i: u32) {
    let c = (i / P[2]) % P[1];
    Y[i] = fma(X[i], S[c], T[c]);
}
