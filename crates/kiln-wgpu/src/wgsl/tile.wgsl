// The tiled GEMM every matrix kernel shares: a 16x16 workgroup computes a 64x64 tile of
// C[M x N] = A[M x K] * B[K x N], 4x4 outputs per thread, K in steps of 16 through workgroup
// memory. The including kernel defines `setup(z)` (M, N, K of launch layer z; it may keep
// per-layer offsets in private variables), `load_a(m, k)`, `load_b(k, n)` (called only inside
// the matrix) and `store(m, n, v)`.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let dims = setup(wg.z);
    let M = dims.x;
    let N = dims.y;
    let K = dims.z;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let tid = lid.y * 16u + lid.x;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            acc[i][j] = 0.0;
        }
    }
    for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
        for (var r = 0u; r < 4u; r = r + 1u) {
            let e = tid + r * 256u;
            let ka = e % BK;
            let ma = e / BK;
            var a = 0.0;
            if (m0 + ma < M && k0 + ka < K) {
                a = load_a(m0 + ma, k0 + ka);
            }
            As[ka * BM + ma] = a;
            let nb = e % BN;
            let kb = e / BN;
            var b = 0.0;
            if (n0 + nb < N && k0 + kb < K) {
                b = load_b(k0 + kb, n0 + nb);
            }
            Bs[kb * BN + nb] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = As[kk * BM + lid.y + 16u * i];
                bv[i] = Bs[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + lid.x + 16u * j;
            if (m < M && n < N) {
                store(m, n, acc[i][j]);
            }
        }
    }
}
