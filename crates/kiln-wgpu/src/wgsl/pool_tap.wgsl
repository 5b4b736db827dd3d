// One tap of a 2-D pooling window, shared by the per-output and per-workgroup pools: tap
// (kh, kw) of output (oh, ow) over the plane at `base`, with P as in pool.wgsl. `padded`: the
// tap lies inside the padded input (what count_include_pad counts); `inside`: inside the
// input itself, where `v` is its value.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

struct Tap {
    padded: bool,
    inside: bool,
    v: f32,
}

fn pool_tap(base: u32, oh: u32, ow: u32, kh: u32, kw: u32) -> Tap {
    var t: Tap;
    let H = i32(P[1]);
    let W = i32(P[2]);
    let ih = i32(oh * P[7] + kh * P[11]) - i32(P[9]);
    let iw = i32(ow * P[8] + kw * P[12]) - i32(P[10]);
    t.padded = ih >= -i32(P[9]) && ih < H + i32(P[14]) && iw >= -i32(P[10]) && iw < W + i32(P[15]);
    t.inside = ih >= 0 && iw >= 0 && ih < H && iw < W;
    t.v = 0.0;
    if (t.inside) {
        t.v = X[base + u32(ih) * P[2] + u32(iw)];
    }
    return t;
}

// What a window has seen so far: its maximum, sum, taps inside the input and inside the
// padded input, and whether a NaN was among them.
struct Window {
    best: f32,
    sum: f32,
    valid: u32,
    padded: u32,
    nan: bool,
}

fn window_new() -> Window {
    var w: Window;
    w.best = bitcast<f32>(0xff800000u | (P[13] & 0u));
    w.sum = 0.0;
    w.valid = 0u;
    w.padded = 0u;
    w.nan = false;
    return w;
}

fn window_add(w0: Window, t: Tap) -> Window {
    var w = w0;
    w.padded = w.padded + u32(t.padded);
    if (t.inside) {
        w.nan = w.nan || (t.v != t.v);
        w.best = max(w.best, t.v);
        w.sum = w.sum + t.v;
        w.valid = w.valid + 1u;
    }
    return w;
}

// The pooled value from a window's maximum, sum, taps inside and taps inside the padding.
fn pool_result(best: f32, sum: f32, valid: u32, padded: u32, nan: bool) -> f32 {
    let mode = P[13];
    var y = best;
    if (mode == 0u && nan) {
        y = bitcast<f32>(0x7fc00000u);
    }
    if (mode == 1u) {
        y = sum / f32(max(valid, 1u));
    } else if (mode == 2u) {
        y = sum / f32(max(padded, 1u));
    }
    return y;
}
