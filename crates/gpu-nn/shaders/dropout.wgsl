// Dropout with a counter-based RNG: the mask bit of element i is a pure function of
// (seed, i / group), so the backward pass recomputes it instead of storing it, and the CPU
// reference reproduces it exactly (integer ops only up to the keep test).
// group = 1 for plain dropout, H*W for dropout2d (one draw per channel).
// Dispatch: 1-D over vec4s (ceil(n / 4)), 256 per workgroup, index folded into y; buffers
// are whole vec4s (see elementwise.wgsl), and elements past n only touch padding.

struct Params {
    n: u32,
    group: u32,
    // keep iff hash >= threshold; ignored when drop_all != 0.
    threshold: u32,
    drop_all: u32,
    // 32-bit keys derived from the 64-bit seed on the CPU.
    key0: u32,
    key1: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

// PCG-RXS-M-XS hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020).
// u32 arithmetic wraps in WGSL, as wrapping_mul/wrapping_add do on the CPU. Four lanes at once.
fn pcg4(v: vec4<u32>) -> vec4<u32> {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> vec4<u32>(28u)) + 4u)) ^ state) * 277803737u;
    return (word >> vec4<u32>(22u)) ^ word;
}

@compute @workgroup_size(256)
fn dropout_mask_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i * 4u >= p.n) { return; }
    let e = vec4<u32>(i * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    let h = pcg4(pcg4((e / p.group) ^ vec4<u32>(p.key0)) + p.key1);
    let keep = vec4<bool>(p.drop_all == 0u) & (h >= vec4<u32>(p.threshold));
    y[i] = select(vec4<f32>(0.0), x[i] * p.scale, keep);
}
