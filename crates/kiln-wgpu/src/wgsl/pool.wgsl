// 2-D Max/Average pooling, one output per thread: P = [n, H, W, OH, OW, KH, KW, sh, sw, ph, pw,
// dh, dw, mode (0 max, 1 average over valid taps, 2 average counting pads), ph_end, pw_end].
fn count() -> u32 {
    return P[0];
}

fn body(idx: u32) {
    let OH = P[3];
    let OW = P[4];
    let ow = idx % OW;
    let oh = (idx / OW) % OH;
    let base = (idx / (OW * OH)) * P[1] * P[2];
    var best = bitcast<f32>(0xff800000u | (P[13] & 0u));
    var sum = 0.0;
    var valid = 0u;
    var padded = 0u;
    var any_nan = false;
    for (var kh = 0u; kh < P[5]; kh = kh + 1u) {
        for (var kw = 0u; kw < P[6]; kw = kw + 1u) {
            let t = pool_tap(base, oh, ow, kh, kw);
            padded = padded + u32(t.padded);
            if (!t.inside) {
                continue;
            }
            any_nan = any_nan || (t.v != t.v);
            best = max(best, t.v);
            sum = sum + t.v;
            valid = valid + 1u;
        }
    }
    Y[idx] = pool_result(best, sum, valid, padded, any_nan);
}
