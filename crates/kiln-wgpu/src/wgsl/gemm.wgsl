// Batched GEMM with broadcast batch dims, transposes by strides, alpha/beta, C and an
// activation: P = [M, N, K, a_sm, a_sk, b_sk, b_sn, nbd, bdims[4], a_bstr[4], b_bstr[4],
// alpha, beta, has_c, c_sm, c_sn, act, act_a, act_b, k_begin, k_end, part (0: all of K,
// 1: the first part of several, 2: a middle part, 3: the last part)].
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> C: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

// Parameters copied into private variables once (see conv.wgsl).
var<private> a_base: u32;
var<private> b_base: u32;
var<private> y_base: u32;
var<private> A_SM: u32;
var<private> A_SK: u32;
var<private> B_SK: u32;
var<private> B_SN: u32;
var<private> NN: u32;
var<private> ALPHA: f32;
var<private> BETA: f32;
var<private> HAS_C: bool;
var<private> C_SM: u32;
var<private> C_SN: u32;
var<private> ACT: u32;
var<private> ACT_A: f32;
var<private> ACT_B: f32;

fn setup(z: u32) -> vec3<u32> {
    var rem = z;
    var oa = 0u;
    var ob = 0u;
    for (var d = P[7]; d > 0u; d = d - 1u) {
        let n = P[7u + d];
        let c = rem % n;
        rem = rem / n;
        oa = oa + c * P[11u + d];
        ob = ob + c * P[15u + d];
    }
    a_base = oa;
    b_base = ob;
    y_base = z * P[0] * P[1];
    A_SM = P[3];
    A_SK = P[4];
    B_SK = P[5];
    B_SN = P[6];
    NN = P[1];
    ALPHA = pf(20u);
    BETA = pf(21u);
    HAS_C = P[22] != 0u;
    C_SM = P[23];
    C_SN = P[24];
    ACT = P[25];
    ACT_A = pf(26u);
    ACT_B = pf(27u);
    return vec3<u32>(P[0], P[1], P[2]);
}

fn load_a(m: u32, k: u32) -> f32 {
    return A[a_base + m * A_SM + k * A_SK];
}

fn load_b(k: u32, n: u32) -> f32 {
    return B[b_base + k * B_SK + n * B_SN];
}

fn k_range() -> vec2<u32> {
    return vec2<u32>(P[28], P[29]);
}

fn store(m: u32, n: u32, v: f32) {
    let idx = y_base + m * NN + n;
    let k = k_part(idx, v, P[30]);
    if (k.y == 0.0) {
        return;
    }
    var y = ALPHA * k.x;
    if (HAS_C) {
        y = y + BETA * C[m * C_SM + n * C_SN];
    }
    Y[idx] = act(y, ACT, ACT_A, ACT_B);
}
