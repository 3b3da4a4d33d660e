// Reductions over the middle axis of a [outer, r, inner] view, and the matching broadcast.

struct Params {
    outer: u32,
    r: u32,
    inner: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Lanes per output of sum_mid: 256, or 1 when the summed axis is short and one invocation
// walks it alone (a 256-lane tree costs 8 barriers, which CPU drivers pay dearly).
override RW: u32 = 256u;

var<workgroup> partial: array<f32, 256>;

// One workgroup per (outer, inner) output: RW lanes stride over r, then a tree sum.
// Deterministic order, so results do not depend on scheduling.
@compute @workgroup_size(RW)
fn sum_mid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    let total = p.outer * p.inner;
    // Uniform control flow: every lane of a workgroup takes the same branch.
    let valid = o < total;
    let oo = o / max(p.inner, 1u);
    let ii = o % max(p.inner, 1u);
    var acc = 0.0;
    if (valid) {
        for (var k = lid; k < p.r; k = k + RW) {
            acc = acc + x[(oo * p.r + k) * p.inner + ii];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = RW / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
        workgroupBarrier();
    }
    if (valid && lid == 0u) { y[o] = partial[0] * p.scale; }
}

// y[o, k, i] = scale * x[o, i]   (the backward of sum_mid)
@compute @workgroup_size(256)
fn broadcast_mid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = linear(wid, nwg, lid);
    if (idx >= p.outer * p.r * p.inner) { return; }
    let ii = idx % p.inner;
    let oo = idx / (p.r * p.inner);
    y[idx] = x[oo * p.inner + ii] * p.scale;
}
