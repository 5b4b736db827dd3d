// y = value: P = [n, value].
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(i: u32) {
    Y[i] = pf(1u);
}
