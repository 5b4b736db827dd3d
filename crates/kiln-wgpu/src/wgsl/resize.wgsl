// Separable 2-D resize of NCHW planes from per-axis tap tables made on the host (so the
// coordinate rules are exactly the CPU kernel's): P = [n, H, W, OH, OW, taps_h, taps_w,
// then for each output row taps_h (index, weight) pairs, then for each output column taps_w].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(idx: u32) {
    let OH = P[3];
    let OW = P[4];
    let th = P[5];
    let tw = P[6];
    let ow = idx % OW;
    let oh = (idx / OW) % OH;
    let plane = idx / (OW * OH);
    let base = plane * P[1] * P[2];
    let hrow = 7u + oh * th * 2u;
    let wrow = 7u + OH * th * 2u + ow * tw * 2u;
    var acc = 0.0;
    for (var a = 0u; a < th; a = a + 1u) {
        let ih = P[hrow + 2u * a];
        let wh = pf(hrow + 2u * a + 1u);
        var row = 0.0;
        for (var b = 0u; b < tw; b = b + 1u) {
            let iw = P[wrow + 2u * b];
            row = row + pf(wrow + 2u * b + 1u) * X[base + ih * P[2] + iw];
        }
        acc = acc + wh * row;
    }
    Y[idx] = acc;
}
