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
    var w = window_new();
    for (var kh = 0u; kh < P[5]; kh = kh + 1u) {
        for (var kw = 0u; kw < P[6]; kw = kw + 1u) {
            w = window_add(w, pool_tap(base, oh, ow, kh, kw));
        }
    }
    Y[idx] = pool_result(w.best, w.sum, w.valid, w.padded, w.nan);
}
