// Batch normalization over a [N, C, S] view (S = product of the spatial dims, 1 for [N, C]).
// Statistics are per channel over the M = N * S values of that channel.
// Where S % 4 == 0 (a texel then stays in one channel's plane) each kernel has a twin (`*_t`)
// that reads its big operands as texels, a vec4 per load: from the buffers on GPUs, from
// operand textures on lavapipe (which gathers texels faster than it loads storage with
// per-lane addresses). The scalar kernels serve the other shapes. Buffers are whole vec4s
// (the pool rounds to 16 bytes).
// `save` holds what backward needs: save[c] = mean, save[C + c] = 1 / sqrt(var + eps)
// (batch statistics in training, running statistics in evaluation).

struct Params {
    n: u32,
    c: u32,
    s: u32,
    // 1 = training (batch statistics, running-stat update), 0 = evaluation.
    training: u32,
    has_weight: u32,
    has_bias: u32,
    momentum: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// Walks the units k = lid, lid + 256, ... (k < N * s) of one channel as (image, offset)
// with carried counters instead of a division per value; s is the plane size in units
// (S values, or S / 4 vec4s).
struct Walk {
    ni: u32,
    si: u32,
    dn: u32,
    ds: u32,
}

fn walk_start(lid: u32, s: u32) -> Walk {
    let ni = udiv(lid, s);
    let dn = udiv(256u, s);
    return Walk(ni, lid - ni * s, dn, 256u - dn * s);
}

fn walk_index(w: Walk, c: u32, s: u32) -> u32 {
    return (w.ni * p.c + c) * s + w.si;
}

fn walk_next(w: ptr<function, Walk>, s: u32) {
    (*w).ni = (*w).ni + (*w).dn;
    (*w).si = (*w).si + (*w).ds;
    if ((*w).si >= s) {
        (*w).si = (*w).si - s;
        (*w).ni = (*w).ni + 1u;
    }
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Channel of element i.
fn channel(i: u32) -> u32 {
    let plane = udiv(i, p.s);
    return plane - udiv(plane, p.c) * p.c;
}

// Tree sums of red_a and red_b; the totals end up in red_a[0] and red_b[0].
fn tree_sum2(lid: u32) {
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            red_a[lid] = red_a[lid] + red_a[lid + w];
            red_b[lid] = red_b[lid] + red_b[lid + w];
        }
        workgroupBarrier();
    }
}

// --- bn_stats(x, save, running_mean, running_var): one workgroup per channel.
// Training: one pass over the channel's values shifted by its first value (a shift near the
// mean keeps sum(d^2) - sum(d)^2 / M free of cancellation, as two passes would, at half the
// loads and one tree sum); writes the batch mean and inverse std to `save` and updates the
// running statistics in place with the unbiased variance.
// Evaluation: copies the running statistics into `save`.
@group(0) @binding(1) var<storage, read> sx: array<f32>;
@group(0) @binding(2) var<storage, read_write> ssave: array<f32>;
@group(0) @binding(3) var<storage, read_write> srm: array<f32>;
@group(0) @binding(4) var<storage, read_write> srv: array<f32>;

fn save_running(c: u32) {
    ssave[c] = srm[c];
    ssave[p.c + c] = inverseSqrt(srv[c] + p.eps);
}

// Saves the batch statistics of channel c from the sums of its values minus `shift` and of
// their squares.
fn save_shifted(c: u32, shift: f32, s1: f32, s2: f32) {
    let fm = f32(p.n * p.s);
    save_batch(c, shift + s1 / fm, max(s2 - s1 * s1 / fm, 0.0));
}

// Saves the batch statistics of channel c from its mean and sum of squared deviations.
fn save_batch(c: u32, mean: f32, ss: f32) {
    let m = p.n * p.s;
    let var_b = ss / f32(m);
    ssave[c] = mean;
    ssave[p.c + c] = inverseSqrt(var_b + p.eps);
    // m > 1 is checked on the host, so the unbiased variance is finite.
    let var_u = ss / f32(m - 1u);
    srm[c] = (1.0 - p.momentum) * srm[c] + p.momentum * mean;
    srv[c] = (1.0 - p.momentum) * srv[c] + p.momentum * var_u;
}

@compute @workgroup_size(256)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let valid = c < p.c;
    let m = p.n * p.s;
    if (p.training == 0u) {
        if (valid && lid == 0u) { save_running(c); }
        return;
    }
    var s1 = 0.0;
    var s2 = 0.0;
    var shift = 0.0;
    if (valid) {
        shift = sx[c * p.s];
        var w = walk_start(lid, p.s);
        for (var k = lid; k < m; k = k + 256u) {
            let d = sx[walk_index(w, c, p.s)] - shift;
            s1 = s1 + d;
            s2 = s2 + d * d;
            walk_next(&w, p.s);
        }
    }
    red_a[lid] = s1;
    red_b[lid] = s2;
    tree_sum2(lid);
    if (valid && lid == 0u) { save_shifted(c, shift, red_a[0], red_b[0]); }
}

// bn_stats_t: bn_stats reading x as texels, a vec4 per load, where S % 4 == 0.
@group(0) @binding(1) var tx: texture_2d<f32>;

@compute @workgroup_size(256)
fn bn_stats_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let valid = c < p.c;
    let s4 = p.s / 4u;
    let m4 = p.n * s4;
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var shift = 0.0;
    if (valid) {
        shift = texel4(tx, c * s4).x;
        var w = walk_start(lid, s4);
        for (var k = lid; k < m4; k = k + 256u) {
            let d = texel4(tx, walk_index(w, c, s4)) - shift;
            s1 = s1 + d;
            s2 = s2 + d * d;
            walk_next(&w, s4);
        }
    }
    red_a[lid] = hsum(s1);
    red_b[lid] = hsum(s2);
    tree_sum2(lid);
    if (valid && lid == 0u) { save_shifted(c, shift, red_a[0], red_b[0]); }
}

// --- bn_apply(x, save, weight, bias, y): y = (x - mean) * invstd * weight + bias, elementwise.
// weight / bias are ignored (a dummy buffer is bound) when has_weight / has_bias is 0.
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read> asave: array<f32>;
@group(0) @binding(3) var<storage, read> aw: array<f32>;
@group(0) @binding(4) var<storage, read> ab: array<f32>;
@group(0) @binding(5) var<storage, read_write> ay: array<f32>;

// (mean, scale, shift) of channel c: y = (x - mean) * scale + shift.
fn affine(c: u32) -> vec3<f32> {
    var scale = asave[p.c + c];
    if (p.has_weight != 0u) { scale = scale * aw[c]; }
    var shift = 0.0;
    if (p.has_bias != 0u) { shift = ab[c]; }
    return vec3<f32>(asave[c], scale, shift);
}

@compute @workgroup_size(256)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n * p.c * p.s) { return; }
    let a = affine(channel(i));
    ay[i] = (ax[i] - a.x) * a.y + a.z;
}

// bn_apply_t: bn_apply reading x as texels, a vec4 per invocation (S % 4 == 0).
@group(0) @binding(1) var atx: texture_2d<f32>;
@group(0) @binding(5) var<storage, read_write> ay4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn bn_apply_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n * p.c * (p.s / 4u)) { return; }
    let a = affine(channel(4u * i));
    ay4[i] = (texel4(atx, i) - a.x) * a.y + a.z;
}

// --- bn_bwd_reduce(x, g, save, dbeta, dgamma): one workgroup per channel (x and g first,
// as bn_bwd_reduce_t takes them as texel operands).
// dbeta[c] = sum(g), dgamma[c] = sum(g * xhat) over the channel's M values.
@group(0) @binding(1) var<storage, read> rx: array<f32>;
@group(0) @binding(2) var<storage, read> rg: array<f32>;
@group(0) @binding(3) var<storage, read> rsave: array<f32>;
@group(0) @binding(4) var<storage, read_write> rdbeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> rdgamma: array<f32>;

@compute @workgroup_size(256)
fn bn_bwd_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let valid = c < p.c;
    let m = p.n * p.s;
    var sg = 0.0;
    var sgx = 0.0;
    if (valid) {
        let mean = rsave[c];
        let invstd = rsave[p.c + c];
        var w = walk_start(lid, p.s);
        for (var k = lid; k < m; k = k + 256u) {
            let j = walk_index(w, c, p.s);
            let g = rg[j];
            sg = sg + g;
            sgx = sgx + g * (rx[j] - mean) * invstd;
            walk_next(&w, p.s);
        }
    }
    red_a[lid] = sg;
    red_b[lid] = sgx;
    tree_sum2(lid);
    if (valid && lid == 0u) {
        rdbeta[c] = red_a[0];
        rdgamma[c] = red_b[0];
    }
}

// bn_bwd_reduce_t(x, g, save, dbeta, dgamma): bn_bwd_reduce reading x and g as texels (both
// first: `Gpu::dispatch_texels` binds its operands before the buffers), S % 4 == 0.
@group(0) @binding(1) var rtx: texture_2d<f32>;
@group(0) @binding(2) var rtg: texture_2d<f32>;

@compute @workgroup_size(256)
fn bn_bwd_reduce_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let valid = c < p.c;
    let s4 = p.s / 4u;
    let m4 = p.n * s4;
    var sg = vec4<f32>(0.0);
    var sgx = vec4<f32>(0.0);
    if (valid) {
        let mean = rsave[c];
        let invstd = rsave[p.c + c];
        var w = walk_start(lid, s4);
        for (var k = lid; k < m4; k = k + 256u) {
            let j = walk_index(w, c, s4);
            let g = texel4(rtg, j);
            sg = sg + g;
            sgx = sgx + g * (texel4(rtx, j) - mean) * invstd;
            walk_next(&w, s4);
        }
    }
    red_a[lid] = hsum(sg);
    red_b[lid] = hsum(sgx);
    tree_sum2(lid);
    if (valid && lid == 0u) {
        rdbeta[c] = red_a[0];
        rdgamma[c] = red_b[0];
    }
}

// --- bn_bwd_dx(x, g, save, weight, dbeta, dgamma, gx), elementwise.
// Training: gx = gamma * invstd / M * (M * g - sum(g) - xhat * sum(g * xhat)).
// Evaluation (statistics are constants): gx = g * gamma * invstd.
// x and g come first, so that bn_bwd_dx_t can take them as texel operands and share the rest.
@group(0) @binding(1) var<storage, read> dx_x: array<f32>;
@group(0) @binding(2) var<storage, read> dx_g: array<f32>;
@group(0) @binding(3) var<storage, read> dx_save: array<f32>;
@group(0) @binding(4) var<storage, read> dx_w: array<f32>;
@group(0) @binding(5) var<storage, read> dx_dbeta: array<f32>;
@group(0) @binding(6) var<storage, read> dx_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx_out: array<f32>;

// Channel c's factors of the formulas above (mean and sums stay 0 in evaluation).
struct DxTerms {
    k: f32,
    m: f32,
    mean: f32,
    invstd: f32,
    sum_g: f32,
    sum_gx: f32,
}

fn dx_terms(c: u32) -> DxTerms {
    let invstd = dx_save[p.c + c];
    var k = invstd;
    if (p.has_weight != 0u) { k = k * dx_w[c]; }
    var t = DxTerms(k, f32(p.n * p.s), 0.0, invstd, 0.0, 0.0);
    if (p.training != 0u) {
        t.mean = dx_save[c];
        t.sum_g = dx_dbeta[c];
        t.sum_gx = dx_dgamma[c];
    }
    return t;
}

@compute @workgroup_size(256)
fn bn_bwd_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n * p.c * p.s) { return; }
    let t = dx_terms(channel(i));
    if (p.training == 0u) {
        dx_out[i] = dx_g[i] * t.k;
        return;
    }
    let xhat = (dx_x[i] - t.mean) * t.invstd;
    dx_out[i] = t.k / t.m * (t.m * dx_g[i] - t.sum_g - xhat * t.sum_gx);
}

// bn_bwd_dx_t: bn_bwd_dx reading x and g as texels, a vec4 per invocation (S % 4 == 0).
@group(0) @binding(1) var dx_tx: texture_2d<f32>;
@group(0) @binding(2) var dx_tg: texture_2d<f32>;
@group(0) @binding(7) var<storage, read_write> dx_out4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn bn_bwd_dx_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n * p.c * (p.s / 4u)) { return; }
    let t = dx_terms(channel(4u * i));
    let g = texel4(dx_tg, i);
    if (p.training == 0u) {
        dx_out4[i] = g * t.k;
        return;
    }
    let xhat = (texel4(dx_tx, i) - t.mean) * t.invstd;
    dx_out4[i] = t.k / t.m * (t.m * g - t.sum_g - xhat * t.sum_gx);
}
