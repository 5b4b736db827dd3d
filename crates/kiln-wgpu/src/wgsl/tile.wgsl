// The tiled GEMM every matrix kernel shares: a 16x16 workgroup computes a 64x64 tile of
// C[M x N] = A[M x K] * B[K x N], a 4x4 block per thread held in four vec4 accumulators
// (registers, not an indexed array), K in steps of 32 through workgroup memory read as vec4.
// The including kernel defines `setup(z)` (M, N, K of launch layer z; it may keep per-layer
// offsets in private variables), `k_range()` (the part of K this launch sums: a long K runs
// as several launches, each adding its part to the output, so that no invocation loops more
// than a few thousand times), `load_a(m, k)`, `load_b(k, n)` (called only inside the matrix)
// and `store(m, n, v)`, which calls `k_part(idx, v, part)` first.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
// [BK][BM] and [BK][BN], four floats per element.
var<workgroup> As: array<vec4<f32>, 512>;
var<workgroup> Bs: array<vec4<f32>, 512>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let dims = setup(wg.z);
    let M = dims.x;
    let N = dims.y;
    let K = dims.z;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let tid = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let kr = k_range();
    for (var k0 = kr.x; k0 < kr.y; k0 = k0 + BK) {
        for (var r = 0u; r < 8u; r = r + 1u) {
            let e = tid + r * 256u;
            // A is read along k (contiguous for row-major weights), B along n.
            let ka = e % BK;
            let ma = e / BK;
            var a = 0.0;
            if (m0 + ma < M && k0 + ka < kr.y) {
                a = load_a(m0 + ma, k0 + ka);
            }
            As[(ka * BM + ma) / 4u][ma % 4u] = a;
            let nb = e % BN;
            let kb = e / BN;
            var b = 0.0;
            if (n0 + nb < N && k0 + kb < kr.y) {
                b = load_b(k0 + kb, n0 + nb);
            }
            Bs[(kb * BN + nb) / 4u][nb % 4u] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let a = As[kk * 16u + lid.y];
            let b = Bs[kk * 16u + lid.x];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let m = m0 + lid.y * 4u;
    let n = n0 + lid.x * 4u;
    store_row(m, n, M, N, acc0);
    store_row(m + 1u, n, M, N, acc1);
    store_row(m + 2u, n, M, N, acc2);
    store_row(m + 3u, n, M, N, acc3);
}

fn store_row(m: u32, n: u32, M: u32, N: u32, v: vec4<f32>) {
    if (m >= M) {
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (n + j < N) {
            store(m, n + j, v[j]);
        }
    }
}

// The K parts of one output at `idx` of Y (the including kernel's output): the sum so far with
// this launch's part `v` added, and whether this launch finishes it (part 0 or 3, where the
// epilogue runs); a first or middle part stores the partial sum itself.
fn k_part(idx: u32, v: f32, part: u32) -> vec2<f32> {
    var acc = v;
    if (part >= 2u) {
        acc = acc + Y[idx];
    }
    if (part == 1u || part == 2u) {
        Y[idx] = acc;
        return vec2<f32>(acc, 0.0);
    }
    return vec2<f32>(acc, 1.0);
}
