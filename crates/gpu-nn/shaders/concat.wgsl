// Channel concatenation and slicing: one strided block copy between [N, src_c, inner] and
// [N, dst_c, inner] views. Copies channels [src_off, src_off + len) of every sample of the
// source to channels [dst_off, dst_off + len) of the destination. Serves cat (forward and
// backward) and narrow (forward and backward).
// Dispatch: 1-D over N * len * inner elements, 256 per workgroup, index folded into y.

struct Params {
    n: u32,
    len: u32,
    inner: u32,
    src_c: u32,
    src_off: u32,
    dst_c: u32,
    dst_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn channel_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    let block = p.len * p.inner;
    if (i >= p.n * block) { return; }
    let s = i / block;
    let r = i % block;
    let c = r / p.inner;
    let j = r % p.inner;
    dst[(s * p.dst_c + p.dst_off + c) * p.inner + j] = src[(s * p.src_c + p.src_off + c) * p.inner + j];
}
