// Optimizer updates, in place on the parameter buffers, following torch.optim's
// single-tensor code paths operation by operation (same rounding points). Scalars that
// depend only on the step (bias corrections, decay factors) are computed on the CPU in f64
// and passed in. Dispatch: 1-D over the parameter's vec4s (n = ceil(elements / 4)), 256 per
// workgroup; buffers are whole vec4s (see elementwise.wgsl), the padding is updated too and
// never read.

struct Params {
    n: u32,
    // 1 on a parameter's first step: SGD's momentum buffer = d_p, Adam's moments start at 0
    // (so the state buffers need no zero fill and each update is one dispatch).
    first: u32,
    nesterov: u32,
    // Adam: 1 for decoupled weight decay (AdamW).
    decoupled: u32,
    lr: f32,
    momentum: f32,
    one_minus_dampening: f32,
    weight_decay: f32,
    // Adam only:
    lerp_w: f32,        // 1 - beta1
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,     // lr / (1 - beta1^t)
    bc2_sqrt: f32,      // sqrt(1 - beta2^t)
    decay_factor: f32,  // 1 - lr * weight_decay (AdamW)
    _pad2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// --- sgd(param, grad): no momentum
@group(0) @binding(1) var<storage, read_write> s_param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> s_grad: array<vec4<f32>>;

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let w = s_param[i];
    var d = s_grad[i];
    if (p.weight_decay != 0.0) { d = d + p.weight_decay * w; }
    s_param[i] = w + (-p.lr) * d;
}

// --- sgd_momentum(param, grad, momentum_buffer)
@group(0) @binding(1) var<storage, read_write> m_param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> m_grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m_buf: array<vec4<f32>>;

@compute @workgroup_size(256)
fn sgd_momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let w = m_param[i];
    var d = m_grad[i];
    if (p.weight_decay != 0.0) { d = d + p.weight_decay * w; }
    var b: vec4<f32>;
    if (p.first != 0u) {
        // torch: buf = clone(d_p) on the first step, no dampening.
        b = d;
    } else {
        let scaled = m_buf[i] * p.momentum;
        b = scaled + p.one_minus_dampening * d;
    }
    m_buf[i] = b;
    if (p.nesterov != 0u) { d = d + p.momentum * b; } else { d = b; }
    m_param[i] = w + (-p.lr) * d;
}

// --- adam(param, grad, exp_avg, exp_avg_sq)
@group(0) @binding(1) var<storage, read_write> a_param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a_grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> a_m: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> a_v: array<vec4<f32>>;

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    var w = a_param[i];
    var g = a_grad[i];
    if (p.decoupled != 0u) {
        w = w * p.decay_factor;
    } else if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * w;
    }
    // torch.lerp: start + w*(end-start) for w < 0.5, else end - (end-start)*(1-w).
    let m0 = select(a_m[i], vec4<f32>(0.0), p.first != 0u);
    let v0 = select(a_v[i], vec4<f32>(0.0), p.first != 0u);
    var m: vec4<f32>;
    if (p.lerp_w < 0.5) {
        m = m0 + p.lerp_w * (g - m0);
    } else {
        m = g - (g - m0) * (1.0 - p.lerp_w);
    }
    let v1 = v0 * p.beta2;
    let v = v1 + p.one_minus_beta2 * g * g;
    a_m[i] = m;
    a_v[i] = v;
    let denom = sqrt(v) / p.bc2_sqrt + p.eps;
    a_param[i] = w + (-p.step_size) * (m / denom);
}
