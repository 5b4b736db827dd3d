// Reductions with a workgroup per (output, segment): each of the 256 threads walks every 256th
// element of the segment, then the workgroup folds its partials as a tree in shared memory, so
// no invocation loops more than `seg / 256` times whatever the reduced size (lavapipe stops a
// shader loop after 65,535 iterations). A reduction longer than one segment writes one partial
// per segment and runs again over the partials. P = [n, op (0 sum, 2 max, 3 min, 4 sum of
// squares), out_rank, red_rank, count, out_dims[6], out_strides[6], red_dims[6],
// red_strides[6], seg, segs, scale (f32 bits, applied to the result)].

var<workgroup> part: array<f32, 256>;
var<workgroup> any_nan: atomic<u32>;

fn combine(op: u32, a: f32, b: f32) -> f32 {
    switch op {
        case 2u: { return max(a, b); }
        case 3u: { return min(a, b); }
        default: { return a + b; }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wg.y * nwg.x + wg.x;
    let segs = P[30];
    if (g >= P[0] * segs) {
        return;
    }
    if (li == 0u) {
        atomicStore(&any_nan, 0u);
    }
    let o = g / segs;
    let s = g % segs;
    let base = out_base(o);
    let op = P[1];
    var acc = reduce_init(op);
    var nan = false;
    let start = s * P[29];
    let end = min(start + P[29], P[4]);
    for (var r = start + li; r < end; r = r + 256u) {
        let v = X[elem_offset(base, r)];
        nan = nan || (v != v);
        if (op == 4u) {
            acc = acc + v * v;
        } else {
            acc = combine(op, acc, v);
        }
    }
    part[li] = acc;
    workgroupBarrier();
    if (nan) {
        atomicOr(&any_nan, 1u);
    }
    for (var k = 128u; k > 0u; k = k >> 1u) {
        if (li < k) {
            part[li] = combine(op, part[li], part[li + k]);
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        var y = part[0] * pf(31u);
        if (atomicLoad(&any_nan) != 0u) {
            y = bitcast<f32>(0x7fc00000u);
        }
        Y[g] = y;
    }
}
