// Elementwise kernels: fill, unary activations (forward and backward), binary ops, axpby.
// Dispatch: 1-D over vec4s (n4 = ceil(n / 4)), 256 per workgroup; the linear index folds in
// y so that more than 65535 workgroups fit (see Gpu::dispatch). Every tensor buffer is a
// whole number of vec4s (the pool rounds to 16 bytes), so the last vec4 may run past n into
// padding that nothing reads. One vec4 load per invocation: CPU drivers (lavapipe) pay per
// load instruction, not per byte.

struct Params {
    n4: u32,
    op: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// --- fill(out)
@group(0) @binding(1) var<storage, read_write> fill_out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i < p.n4) { fill_out[i] = vec4<f32>(p.alpha); }
}

// Unary op codes (keep in sync with ops/elementwise.rs):
// 0 relu, 1 leaky_relu(alpha), 2 sigmoid, 3 tanh, 4 affine alpha*x+beta, 5 exp, 6 square
fn unary(op: u32, x: vec4<f32>) -> vec4<f32> {
    let zero = vec4<f32>(0.0);
    switch op {
        case 0u: { return max(x, zero); }
        case 1u: { return select(p.alpha * x, x, x > zero); }
        case 2u: {
            // Stable for large |x|: exp of a non-positive number only.
            let e = exp(-abs(x));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= zero);
        }
        case 3u: { return tanh(x); }
        case 4u: { return p.alpha * x + p.beta; }
        case 5u: { return exp(x); }
        case 6u: { return x * x; }
        default: { return x; }
    }
}

// d(out)/d(in) given the input x and the output y.
fn unary_grad(op: u32, x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    let zero = vec4<f32>(0.0);
    let one = vec4<f32>(1.0);
    switch op {
        case 0u: { return select(zero, one, x > zero); }
        case 1u: { return select(vec4<f32>(p.alpha), one, x > zero); }
        case 2u: { return y * (1.0 - y); }
        case 3u: { return 1.0 - y * y; }
        case 4u: { return vec4<f32>(p.alpha); }
        case 5u: { return y; }
        case 6u: { return 2.0 * x; }
        default: { return one; }
    }
}

fn binary_op(op: u32, a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    switch op {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        default: { return p.alpha * a + p.beta * b; }
    }
}

// --- unary_fwd(x, y), unary_bwd(x, y, gy, gx), binary(a, b, out): inputs are texel
// operands (a buffer of vec4s, or a texture on lavapipe, which gathers texels faster than
// it loads storage with per-lane addresses); outputs are buffers of vec4s.
@group(0) @binding(1) var t1: texture_2d<f32>;
@group(0) @binding(2) var t2: texture_2d<f32>;
@group(0) @binding(3) var t3: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> uy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bout: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bgx: array<vec4<f32>>;

@compute @workgroup_size(256)
fn unary_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i < p.n4) { uy[i] = unary(p.op, texel4(t1, i)); }
}

@compute @workgroup_size(256)
fn unary_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i < p.n4) {
        bgx[i] = texel4(t3, i) * unary_grad(p.op, texel4(t1, i), texel4(t2, i));
    }
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i < p.n4) { bout[i] = binary_op(p.op, texel4(t1, i), texel4(t2, i)); }
}
