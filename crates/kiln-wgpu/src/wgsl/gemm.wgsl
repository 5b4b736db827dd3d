// Batched GEMM with broadcast batch dims, transposes by strides, alpha/beta, C and an
// activation: P = [M, N, K, a_sm, a_sk, b_sk, b_sn, nbd, bdims[4], a_bstr[4], b_bstr[4],
// alpha, beta, has_c, c_sm, c_sn, act, act_a, act_b].
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> C: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

var<private> a_base: u32;
var<private> b_base: u32;
var<private> y_base: u32;

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
    return vec3<u32>(P[0], P[1], P[2]);
}

fn load_a(m: u32, k: u32) -> f32 {
    return A[a_base + m * P[3] + k * P[4]];
}

fn load_b(k: u32, n: u32) -> f32 {
    return B[b_base + k * P[5] + n * P[6]];
}

fn store(m: u32, n: u32, v: f32) {
    var y = pf(20u) * v;
    if (P[22] != 0u) {
        y = y + pf(21u) * C[m * P[23] + n * P[24]];
    }
    Y[y_base + m * P[1] + n] = act(y, P[25], pf(26u), pf(27u));
}
