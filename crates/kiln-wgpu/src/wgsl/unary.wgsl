// y = act(x): P = [n, code, a, b].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(i: u32) {
    Y[i] = act(X[i], P[1], pf(2u), pf(3u));
}
