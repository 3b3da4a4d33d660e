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
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// Index of the k-th value (k < M) of channel c.
fn at(c: u32, k: u32) -> u32 {
    let ni = k / p.s;
    let si = k % p.s;
    return (ni * p.c + c) * p.s + si;
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
        for (var k = lid; k < m; k = k + 256u) { acc = acc + sx[at(c, k)]; }
    }
    red_a[lid] = acc;
    red_b[lid] = 0.0;
    tree_sum2(lid);
    let mean = red_a[0] / f32(m);
    workgroupBarrier();
    var dev = 0.0;
    if (valid) {
        for (var k = lid; k < m; k = k + 256u) {
            let d = sx[at(c, k)] - mean;
            dev = dev + d * d;
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
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n * p.c * p.s) { return; }
    let c = (i / p.s) % p.c;
    var scale = asave[p.c + c];
    if (p.has_weight != 0u) { scale = scale * aw[c]; }
    var shift = 0.0;
    if (p.has_bias != 0u) { shift = ab[c]; }
    ay[i] = (ax[i] - asave[c]) * scale + shift;
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
        for (var k = lid; k < m; k = k + 256u) {
            let j = at(c, k);
            let g = rg[j];
            sg = sg + g;
            sgx = sgx + g * (rx[j] - mean) * invstd;
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
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n * p.c * p.s) { return; }
    let c = (i / p.s) % p.c;
    let invstd = dx_save[p.c + c];
    var k = invstd;
    if (p.has_weight != 0u) { k = k * dx_w[c]; }
    let g = dx_g[i];
    if (p.training == 0u) {
        dx_out[i] = g * k;
        return;
    }
    let m = f32(p.n * p.s);
    let xhat = (dx_x[i] - dx_save[c]) * invstd;
    dx_out[i] = k / m * (m * g - dx_dbeta[c] - xhat * dx_dgamma[c]);
}
