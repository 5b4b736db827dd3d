// 2-D convolution as an implicit GEMM per (image, group): A = weights [Mg x Cg*KH*KW],
// B = im2col(x) [Cg*KH*KW x OH*OW] gathered on the fly, epilogue bias + Z + activation.
// P = [N, C, H, W, M, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, group, has_bias, has_z, act, a, b].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(4) var<storage, read> Z: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

var<private> x_base: u32;
var<private> w_base: u32;
var<private> y_base: u32;
var<private> co_base: u32;

fn setup(z: u32) -> vec3<u32> {
    let groups = P[15];
    let cg = P[1] / groups;
    let mg = P[4] / groups;
    let img = z / groups;
    let g = z % groups;
    let k = cg * P[7] * P[8];
    x_base = (img * P[1] + g * cg) * P[2] * P[3];
    w_base = g * mg * k;
    co_base = g * mg;
    y_base = (img * P[4] + g * mg) * P[5] * P[6];
    return vec3<u32>(mg, P[5] * P[6], k);
}

fn load_a(m: u32, k: u32) -> f32 {
    return Wt[w_base + m * ((P[1] / P[15]) * P[7] * P[8]) + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    let taps = P[7] * P[8];
    let ci = k / taps;
    let t = k % taps;
    let kh = t / P[8];
    let kw = t % P[8];
    let oh = n / P[6];
    let ow = n % P[6];
    let ih = i32(oh * P[9] + kh * P[13]) - i32(P[11]);
    let iw = i32(ow * P[10] + kw * P[14]) - i32(P[12]);
    if (ih < 0 || iw < 0 || ih >= i32(P[2]) || iw >= i32(P[3])) {
        return 0.0;
    }
    return X[x_base + (ci * P[2] + u32(ih)) * P[3] + u32(iw)];
}

fn store(m: u32, n: u32, v: f32) {
    let co = co_base + m;
    let idx = y_base + m * (P[5] * P[6]) + n;
    var y = v;
    if (P[16] != 0u) {
        y = y + Bias[co];
    }
    if (P[17] != 0u) {
        y = y + Z[idx];
    }
    Y[idx] = act(y, P[18], pf(19u), pf(20u));
}
