// The first pass of Softmax / LogSoftmax over long rows: a workgroup per (row, segment) finds
// the segment's maximum m and sum of exp(x - m), folding the threads' pairs as a tree; the
// apply pass combines a row's segments. P = [rows, len, inner, log, seg, segs]; row r reads
// len elements `inner` apart from (r / inner) * len * inner + r % inner. Out: (m, s) per
// (row, segment).
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> S: array<f32>;

var<workgroup> pm: array<f32, 256>;
var<workgroup> ps: array<f32, 256>;

// (m1, s1) and (m2, s2) as one pair about the larger maximum; an empty side adds nothing.
fn merge(m1: f32, s1: f32, m2: f32, s2: f32) -> vec2<f32> {
    if (s1 != s1 || s2 != s2) {
        return vec2<f32>(s1 + s2, s1 + s2);
    }
    let m = max(m1, m2);
    var s = 0.0;
    if (s1 > 0.0) {
        s = s + s1 * exp(m1 - m);
    }
    if (s2 > 0.0) {
        s = s + s2 * exp(m2 - m);
    }
    return vec2<f32>(m, s);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wg.y * nwg.x + wg.x;
    let segs = P[5];
    if (g >= P[0] * segs) {
        return;
    }
    let r = g / segs;
    let len = P[1];
    let inner = P[2];
    let base = (r / inner) * len * inner + r % inner;
    let start = (g % segs) * P[4];
    let end = min(start + P[4], len);
    // -inf, made at run time (constant folding refuses infinities): -FLT_MAX would stand above
    // a row of -FLT_MAX (a fully masked attention row), whose exponentials would all be 0.
    var m = bitcast<f32>(0xff800000u | (P[1] & 0u));
    var s = 0.0;
    for (var i = start + li; i < end; i = i + 256u) {
        let v = X[base + i * inner];
        if (v != v) {
            m = v;
            s = v;
        } else if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s = s + exp(v - m);
        }
    }
    pm[li] = m;
    ps[li] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k = k >> 1u) {
        if (li < k) {
            let a = merge(pm[li], ps[li], pm[li + k], ps[li + k]);
            pm[li] = a.x;
            ps[li] = a.y;
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        S[2u * g] = pm[0];
        S[2u * g + 1u] = ps[0];
    }
}
