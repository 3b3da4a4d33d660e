// Batch normalization over a [N, C, S] view (S = product of the spatial dims, 1 for [N, C]).
// Statistics are per channel over the M = N * S values of that channel.
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
    // Elements per invocation of the elementwise kernels: 4 when S is a multiple of 4 (the
    // four then share a channel, so its statistics are loaded once), else 1.
    per: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// floor(a / b) for 1 <= b < 2^22 without an integer division: lavapipe has no vector
// integer division and runs it lane by lane. An f32 estimate, one f32 step on the exact
// remainder and a final +-1 check keep it exact.
fn udiv(a: u32, b: u32) -> u32 {
    let fb = f32(b);
    let q0 = u32(f32(a) / fb);
    let r = i32(a - q0 * b);
    var q = u32(i32(q0) + i32(floor(f32(r) / fb)));
    if (q * b > a) { q = q - 1u; }
    if ((q + 1u) * b <= a) { q = q + 1u; }
    return q;
}

// Walks the values k = lid, lid + 256, ... (k < M) of one channel as (image, offset) with
// carried counters instead of a division per value.
struct Walk {
    ni: u32,
    si: u32,
    dn: u32,
    ds: u32,
}

fn walk_start(lid: u32) -> Walk {
    let ni = udiv(lid, p.s);
    let dn = udiv(256u, p.s);
    return Walk(ni, lid - ni * p.s, dn, 256u - dn * p.s);
}

fn walk_index(w: Walk, c: u32) -> u32 {
    return (w.ni * p.c + c) * p.s + w.si;
}

fn walk_next(w: ptr<function, Walk>) {
    (*w).ni = (*w).ni + (*w).dn;
    (*w).si = (*w).si + (*w).ds;
    if ((*w).si >= p.s) {
        (*w).si = (*w).si - p.s;
        (*w).ni = (*w).ni + 1u;
    }
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
// Training: two passes (mean, then squared deviations) for accuracy; writes the batch mean and
// inverse std to `save` and updates the running statistics in place with the unbiased variance.
// Evaluation: copies the running statistics into `save`.
@group(0) @binding(1) var<storage, read> sx: array<f32>;
@group(0) @binding(2) var<storage, read_write> ssave: array<f32>;
@group(0) @binding(3) var<storage, read_write> srm: array<f32>;
@group(0) @binding(4) var<storage, read_write> srv: array<f32>;

@compute @workgroup_size(256)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    let valid = c < p.c;
    let m = p.n * p.s;
    if (p.training == 0u) {
        if (valid && lid == 0u) {
            ssave[c] = srm[c];
            ssave[p.c + c] = inverseSqrt(srv[c] + p.eps);
        }
        return;
    }
    var acc = 0.0;
    if (valid) {
        var w = walk_start(lid);
        for (var k = lid; k < m; k = k + 256u) {
            acc = acc + sx[walk_index(w, c)];
            walk_next(&w);
        }
    }
    red_a[lid] = acc;
    red_b[lid] = 0.0;
    tree_sum2(lid);
    let mean = red_a[0] / f32(m);
    workgroupBarrier();
    var dev = 0.0;
    if (valid) {
        var w = walk_start(lid);
        for (var k = lid; k < m; k = k + 256u) {
            let d = sx[walk_index(w, c)] - mean;
            dev = dev + d * d;
            walk_next(&w);
        }
    }
    red_a[lid] = dev;
    tree_sum2(lid);
    if (valid && lid == 0u) {
        let ss = red_a[0];
        let var_b = ss / f32(m);
        ssave[c] = mean;
        ssave[p.c + c] = inverseSqrt(var_b + p.eps);
        // m > 1 is checked on the host, so the unbiased variance is finite.
        let var_u = ss / f32(m - 1u);
        srm[c] = (1.0 - p.momentum) * srm[c] + p.momentum * mean;
        srv[c] = (1.0 - p.momentum) * srv[c] + p.momentum * var_u;
    }
}

// --- bn_apply(x, save, weight, bias, y): y = (x - mean) * invstd * weight + bias, elementwise.
// weight / bias are ignored (a dummy buffer is bound) when has_weight / has_bias is 0.
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read> asave: array<f32>;
@group(0) @binding(3) var<storage, read> aw: array<f32>;
@group(0) @binding(4) var<storage, read> ab: array<f32>;
@group(0) @binding(5) var<storage, read_write> ay: array<f32>;

@compute @workgroup_size(256)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i0 = ((wid.y * nwg.x + wid.x) * 256u + lid) * p.per;
    if (i0 >= p.n * p.c * p.s) { return; }
    let c = channel(i0);
    var scale = asave[p.c + c];
    if (p.has_weight != 0u) { scale = scale * aw[c]; }
    var shift = 0.0;
    if (p.has_bias != 0u) { shift = ab[c]; }
    let mean = asave[c];
    for (var e = 0u; e < p.per; e = e + 1u) {
        let i = i0 + e;
        ay[i] = (ax[i] - mean) * scale + shift;
    }
}

// --- bn_bwd_reduce(x, save, g, dbeta, dgamma): one workgroup per channel.
// dbeta[c] = sum(g), dgamma[c] = sum(g * xhat) over the channel's M values.
@group(0) @binding(1) var<storage, read> rx: array<f32>;
@group(0) @binding(2) var<storage, read> rsave: array<f32>;
@group(0) @binding(3) var<storage, read> rg: array<f32>;
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
        var w = walk_start(lid);
        for (var k = lid; k < m; k = k + 256u) {
            let j = walk_index(w, c);
            let g = rg[j];
            sg = sg + g;
            sgx = sgx + g * (rx[j] - mean) * invstd;
            walk_next(&w);
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

// --- bn_bwd_dx(x, save, weight, dbeta, dgamma, gx), elementwise.
// Training: gx = gamma * invstd / M * (M * g - sum(g) - xhat * sum(g * xhat)).
// Evaluation (statistics are constants): gx = g * gamma * invstd.
@group(0) @binding(1) var<storage, read> dx_x: array<f32>;
@group(0) @binding(2) var<storage, read> dx_save: array<f32>;
@group(0) @binding(3) var<storage, read> dx_w: array<f32>;
@group(0) @binding(4) var<storage, read> dx_g: array<f32>;
@group(0) @binding(5) var<storage, read> dx_dbeta: array<f32>;
@group(0) @binding(6) var<storage, read> dx_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx_out: array<f32>;

@compute @workgroup_size(256)
fn bn_bwd_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i0 = ((wid.y * nwg.x + wid.x) * 256u + lid) * p.per;
    if (i0 >= p.n * p.c * p.s) { return; }
    let c = channel(i0);
    let invstd = dx_save[p.c + c];
    var k = invstd;
    if (p.has_weight != 0u) { k = k * dx_w[c]; }
    if (p.training == 0u) {
        for (var e = 0u; e < p.per; e = e + 1u) {
            dx_out[i0 + e] = dx_g[i0 + e] * k;
        }
        return;
    }
    let m = f32(p.n * p.s);
    let mean = dx_save[c];
    let sum_g = dx_dbeta[c];
    let sum_gx = dx_dgamma[c];
    for (var e = 0u; e < p.per; e = e + 1u) {
        let i = i0 + e;
        let xhat = (dx_x[i] - mean) * invstd;
        dx_out[i] = k / m * (m * dx_g[i] - sum_g - xhat * sum_gx);
    }
}
