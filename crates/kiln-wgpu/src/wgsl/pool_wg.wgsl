// 2-D Max/Average pooling over large windows, a workgroup per output: the 256 threads take
// every 256th tap of the window, then fold their maxima, sums and counts as trees. P as in
// pool.wgsl.

var<workgroup> w_best: array<f32, 256>;
var<workgroup> w_sum: array<f32, 256>;
var<workgroup> w_valid: array<u32, 256>;
var<workgroup> w_padded: array<u32, 256>;
var<workgroup> w_nan: atomic<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let idx = wg.y * nwg.x + wg.x;
    if (idx >= P[0]) {
        return;
    }
    if (li == 0u) {
        atomicStore(&w_nan, 0u);
    }
    let OH = P[3];
    let OW = P[4];
    let ow = idx % OW;
    let oh = (idx / OW) % OH;
    let base = (idx / (OW * OH)) * P[1] * P[2];
    let KW = P[6];
    let taps = P[5] * KW;
    var w = window_new();
    for (var i = li; i < taps; i = i + 256u) {
        w = window_add(w, pool_tap(base, oh, ow, i / KW, i % KW));
    }
    w_best[li] = w.best;
    w_sum[li] = w.sum;
    w_valid[li] = w.valid;
    w_padded[li] = w.padded;
    workgroupBarrier();
    if (w.nan) {
        atomicOr(&w_nan, 1u);
    }
    for (var k = 128u; k > 0u; k = k >> 1u) {
        if (li < k) {
            w_best[li] = max(w_best[li], w_best[li + k]);
            w_sum[li] = w_sum[li] + w_sum[li + k];
            w_valid[li] = w_valid[li] + w_valid[li + k];
            w_padded[li] = w_padded[li] + w_padded[li + k];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        Y[idx] = pool_result(w_best[0], w_sum[0], w_valid[0], w_padded[0], atomicLoad(&w_nan) != 0u);
    }
}
