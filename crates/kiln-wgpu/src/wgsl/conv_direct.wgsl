// 2-D convolution, one output per thread (depthwise and narrow groups, where a GEMM tile
// would sit mostly idle). P as in conv.wgsl, plus P[21] = number of outputs.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(4) var<storage, read> Z: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

fn count() -> u32 {
    return P[21];
}

fn body(idx: u32) {
    let H = P[2];
    let W = P[3];
    let OH = P[5];
    let OW = P[6];
    let KH = P[7];
    let KW = P[8];
    let cg = P[1] / P[15];
    let mg = P[4] / P[15];
    let ow = idx % OW;
    let oh = (idx / OW) % OH;
    let co = (idx / (OW * OH)) % P[4];
    let img = idx / (OW * OH * P[4]);
    let g = co / mg;
    var acc = 0.0;
    for (var ci = 0u; ci < cg; ci = ci + 1u) {
        let xc = ((img * P[1] + g * cg + ci) * H);
        let wc = (co * cg + ci) * KH * KW;
        for (var kh = 0u; kh < KH; kh = kh + 1u) {
            let ih = i32(oh * P[9] + kh * P[13]) - i32(P[11]);
            if (ih < 0 || ih >= i32(H)) {
                continue;
            }
            for (var kw = 0u; kw < KW; kw = kw + 1u) {
                let iw = i32(ow * P[10] + kw * P[14]) - i32(P[12]);
                if (iw < 0 || iw >= i32(W)) {
                    continue;
                }
                acc = fma(X[(xc + u32(ih)) * W + u32(iw)], Wt[wc + kh * KW + kw], acc);
            }
        }
    }
    if (P[16] != 0u) {
        acc = acc + Bias[co];
    }
    if (P[17] != 0u) {
        acc = acc + Z[idx];
    }
    Y[idx] = act(acc, P[18], pf(19u), pf(20u));
}
