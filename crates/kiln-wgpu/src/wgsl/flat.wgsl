// The entry point of the one-thread-per-item kernels: 256 threads per workgroup over a 2-D
// grid (rows of at most 65535 groups); the including kernel defines `count()` and `body(i)`.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = flat_index(wg, nwg, li);
    if (i < count()) {
        body(i);
    }
}
