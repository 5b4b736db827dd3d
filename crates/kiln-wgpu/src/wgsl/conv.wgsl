// 2-D convolution as an implicit GEMM per (image, group): A = weights [Mg x Cg*KH*KW],
// B = im2col(x) [Cg*KH*KW x OH*OW] gathered on the fly, epilogue bias + Z + activation.
// P = [N, C, H, W, M, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, group, has_bias, has_z, act, a, b,
// outputs, k_begin, k_end, part (as in gemm.wgsl)].
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> Bias: array<f32>;
@group(0) @binding(4) var<storage, read> Z: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

// Parameters copied into private variables once per workgroup: the loaders run for every
// element of every tile, and a storage read per parameter there costs more than the FMAs.
var<private> x_base: u32;
var<private> w_base: u32;
var<private> y_base: u32;
var<private> co_base: u32;
var<private> kdim: u32;
var<private> H: u32;
var<private> W: u32;
var<private> OW: u32;
var<private> OHW: u32;
var<private> KW: u32;
var<private> TAPS: u32;
var<private> SH: u32;
var<private> SW: u32;
var<private> PH: i32;
var<private> PW: i32;
var<private> DH: u32;
var<private> DW: u32;
var<private> HAS_BIAS: bool;
var<private> HAS_Z: bool;
var<private> ACT: u32;
var<private> ACT_A: f32;
var<private> ACT_B: f32;

fn setup(z: u32) -> vec3<u32> {
    let groups = P[15];
    let cg = P[1] / groups;
    let mg = P[4] / groups;
    let img = z / groups;
    let g = z % groups;
    H = P[2];
    W = P[3];
    OW = P[6];
    OHW = P[5] * P[6];
    KW = P[8];
    TAPS = P[7] * P[8];
    SH = P[9];
    SW = P[10];
    PH = i32(P[11]);
    PW = i32(P[12]);
    DH = P[13];
    DW = P[14];
    HAS_BIAS = P[16] != 0u;
    HAS_Z = P[17] != 0u;
    ACT = P[18];
    ACT_A = pf(19u);
    ACT_B = pf(20u);
    kdim = cg * TAPS;
    x_base = (img * P[1] + g * cg) * H * W;
    w_base = g * mg * kdim;
    co_base = g * mg;
    y_base = (img * P[4] + g * mg) * OHW;
    return vec3<u32>(mg, OHW, kdim);
}

fn load_a(m: u32, k: u32) -> f32 {
    return Wt[w_base + m * kdim + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    let ci = k / TAPS;
    let t = k % TAPS;
    let kh = t / KW;
    let kw = t % KW;
    let oh = n / OW;
    let ow = n % OW;
    let ih = i32(oh * SH + kh * DH) - PH;
    let iw = i32(ow * SW + kw * DW) - PW;
    if (ih < 0 || iw < 0 || ih >= i32(H) || iw >= i32(W)) {
        return 0.0;
    }
    return X[x_base + (ci * H + u32(ih)) * W + u32(iw)];
}

fn k_range() -> vec2<u32> {
    return vec2<u32>(P[22], P[23]);
}

fn store(m: u32, n: u32, v: f32) {
    let co = co_base + m;
    let idx = y_base + m * OHW + n;
    let k = k_part(idx, v, P[24]);
    if (k.y == 0.0) {
        return;
    }
    var y = k.x;
    if (HAS_BIAS) {
        y = y + Bias[co];
    }
    if (HAS_Z) {
        y = y + Z[idx];
    }
    Y[idx] = act(y, ACT, ACT_A, ACT_B);
}
