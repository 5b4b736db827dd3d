// 2-D Max/Average pooling, one output per thread: P = [n, H, W, OH, OW, KH, KW, sh, sw, ph, pw,
// dh, dw, mode (0 max, 1 average over valid taps, 2 average counting pads), ph_end, pw_end].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[0];
}

fn body(idx: u32) {
    let H = i32(P[1]);
    let W = i32(P[2]);
    let OH = P[3];
    let OW = P[4];
    let ow = idx % OW;
    let oh = (idx / OW) % OH;
    let plane = idx / (OW * OH);
    let base = plane * P[1] * P[2];
    let mode = P[13];
    var best = -3.402823e38;
    var sum = 0.0;
    var valid = 0u;
    var padded = 0u;
    var any_nan = false;
    for (var kh = 0u; kh < P[5]; kh = kh + 1u) {
        let ih = i32(oh * P[7] + kh * P[11]) - i32(P[9]);
        for (var kw = 0u; kw < P[6]; kw = kw + 1u) {
            let iw = i32(ow * P[8] + kw * P[12]) - i32(P[10]);
            if (ih >= -i32(P[9]) && ih < H + i32(P[14]) && iw >= -i32(P[10]) && iw < W + i32(P[15])) {
                padded = padded + 1u;
            }
            if (ih < 0 || iw < 0 || ih >= H || iw >= W) {
                continue;
            }
            let v = X[base + u32(ih) * P[2] + u32(iw)];
            any_nan = any_nan || (v != v);
            best = max(best, v);
            sum = sum + v;
            valid = valid + 1u;
        }
    }
    var y = best;
    if (mode == 0u && any_nan) {
        y = bitcast<f32>(0x7fc00000u);
    }
    if (mode == 1u) {
        y = sum / f32(max(valid, 1u));
    } else if (mode == 2u) {
        y = sum / f32(max(padded, 1u));
    }
    Y[idx] = y;
}
