// Softmax family and classification losses over [N, C] rows.
//
// Row kernels run one workgroup per row (the row index folds into y past 65535 rows).
// Loss reductions run in a single workgroup, 256 lanes striding over rows, then a tree sum:
// deterministic order.
//
// Targets are f32 class indices. A target that is negative, >= C, not an integer or NaN is
// invalid: it is never used as an index, and the row's loss (and its gradient) is NaN, so the
// mean is NaN and training code can detect it.

struct Params {
    n: u32,
    c: u32,
    // softmax_fwd / softmax_bwd: 1 = log_softmax, 0 = softmax. bce_bwd: 0 = d/dx, 1 = d/dt.
    mode: u32,
    // A quiet NaN's bits, passed at run time (a NaN constant is a WGSL compile error).
    nan_bits: u32,
    // Multiplier of the reduced sum (1/N for means).
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Lanes per row of the row kernels (softmax_fwd, softmax_bwd, ce_rows): 256, or 1 for short
// rows, where one invocation walks the row alone. Tree reductions over 256 lanes cost 8
// barriers, which CPU drivers pay dearly (SwiftShader switches coroutines at each); the
// other kernels keep 256.
override RW: u32 = 256u;

var<workgroup> red: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;

const NEG_BIG: f32 = -0x1.fffffep+127f; // -f32::MAX, exact (Tint rejects decimals past it)

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn nan() -> f32 {
    return bitcast<f32>(p.nan_bits);
}

// Whether t is an integer class index in [0, C). NaN fails every comparison.
fn valid_target(t: f32) -> bool {
    return t >= 0.0 && t < f32(p.c) && floor(t) == t;
}

// Index to read for target t: its class when valid, else 0 (in bounds, result discarded).
fn target_index(t: f32) -> u32 {
    return select(0u, u32(t), valid_target(t));
}

fn tree_max(lid: u32) {
    workgroupBarrier();
    for (var w = RW / 2u; w > 0u; w = w >> 1u) {
        if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
        workgroupBarrier();
    }
}

fn tree_sum(lid: u32) {
    workgroupBarrier();
    for (var w = RW / 2u; w > 0u; w = w >> 1u) {
        if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
        workgroupBarrier();
    }
}

// --- softmax_fwd(x, y): y = log_softmax(x) (mode 1) or softmax(x) (mode 0) per row.
@group(0) @binding(1) var<storage, read> sm_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sm_y: array<f32>;

@compute @workgroup_size(RW)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    let valid = row < p.n;
    let base = row * p.c;
    var mx = NEG_BIG;
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) { mx = max(mx, sm_x[base + k]); }
    }
    red[lid] = mx;
    tree_max(lid);
    mx = red[0];
    workgroupBarrier();
    var s = 0.0;
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) { s = s + exp(sm_x[base + k] - mx); }
    }
    red[lid] = s;
    tree_sum(lid);
    let lse = mx + log(red[0]);
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) {
            let l = sm_x[base + k] - lse;
            sm_y[base + k] = select(exp(l), l, p.mode == 1u);
        }
    }
}

// --- softmax_bwd(y, g, gx), per row.
// log_softmax: gx = g - softmax * sum(g), with softmax = exp(y).
// softmax:     gx = y * (g - sum(g * y)).
@group(0) @binding(1) var<storage, read> sb_y: array<f32>;
@group(0) @binding(2) var<storage, read> sb_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> sb_gx: array<f32>;

@compute @workgroup_size(RW)
fn softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    let valid = row < p.n;
    let base = row * p.c;
    let logm = p.mode == 1u;
    var s = 0.0;
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) {
            let g = sb_g[base + k];
            s = s + select(g * sb_y[base + k], g, logm);
        }
    }
    red[lid] = s;
    tree_sum(lid);
    let total = red[0];
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) {
            let y = sb_y[base + k];
            let g = sb_g[base + k];
            sb_gx[base + k] = select(y * (g - total), g - exp(y) * total, logm);
        }
    }
}

// --- nll_fwd(log_probs, targets, out): out[0] = scale * sum_i -log_probs[i, t_i]. One workgroup.
@group(0) @binding(1) var<storage, read> nf_lp: array<f32>;
@group(0) @binding(2) var<storage, read> nf_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> nf_out: array<f32>;

@compute @workgroup_size(256)
fn nll_fwd(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i = i + 256u) {
        let t = nf_t[i];
        let v = -nf_lp[i * p.c + target_index(t)];
        acc = acc + select(nan(), v, valid_target(t));
    }
    red[lid] = acc;
    tree_sum(lid);
    if (lid == 0u) { nf_out[0] = red[0] * p.scale; }
}

// --- nll_bwd(targets, g, gx): gx[i, j] = -g * scale if j == t_i else 0; NaN rows if invalid.
@group(0) @binding(1) var<storage, read> nb_t: array<f32>;
@group(0) @binding(2) var<storage, read> nb_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> nb_gx: array<f32>;

@compute @workgroup_size(256)
fn nll_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let idx = row_of(wid, nwg) * 256u + lid;
    if (idx >= p.n * p.c) { return; }
    let t = nb_t[idx / p.c];
    let j = idx % p.c;
    let v = select(0.0, -nb_g[0] * p.scale, j == target_index(t));
    nb_gx[idx] = select(nan(), v, valid_target(t));
}

// --- ce_rows(logits, targets, row_loss, lse): per row, lse = logsumexp(x) (max-subtracted),
// row_loss = lse - x[t] (NaN for an invalid target).
@group(0) @binding(1) var<storage, read> cr_x: array<f32>;
@group(0) @binding(2) var<storage, read> cr_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> cr_loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> cr_lse: array<f32>;

@compute @workgroup_size(RW)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    let valid = row < p.n;
    let base = row * p.c;
    var mx = NEG_BIG;
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) { mx = max(mx, cr_x[base + k]); }
    }
    red[lid] = mx;
    tree_max(lid);
    mx = red[0];
    workgroupBarrier();
    var s = 0.0;
    if (valid) {
        for (var k = lid; k < p.c; k = k + RW) { s = s + exp(cr_x[base + k] - mx); }
    }
    red[lid] = s;
    tree_sum(lid);
    if (valid && lid == 0u) {
        let lse = mx + log(red[0]);
        let t = cr_t[row];
        cr_lse[row] = lse;
        cr_loss[row] = select(nan(), lse - cr_x[base + target_index(t)], valid_target(t));
    }
}

// --- ce_bwd(logits, lse, targets, g, gx): gx = g * scale * (softmax - onehot); NaN rows if
// the target is invalid.
@group(0) @binding(1) var<storage, read> cb_x: array<f32>;
@group(0) @binding(2) var<storage, read> cb_lse: array<f32>;
@group(0) @binding(3) var<storage, read> cb_t: array<f32>;
@group(0) @binding(4) var<storage, read> cb_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> cb_gx: array<f32>;

@compute @workgroup_size(256)
fn ce_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let idx = row_of(wid, nwg) * 256u + lid;
    if (idx >= p.n * p.c) { return; }
    let i = idx / p.c;
    let t = cb_t[i];
    let sm = exp(cb_x[idx] - cb_lse[i]);
    let onehot = select(0.0, 1.0, idx % p.c == target_index(t));
    let v = cb_g[0] * p.scale * (sm - onehot);
    cb_gx[idx] = select(nan(), v, valid_target(t));
}

// --- mean_fwd(v, out): out[0] = scale * sum(v[0..n]). One workgroup.
@group(0) @binding(1) var<storage, read> mf_v: array<f32>;
@group(0) @binding(2) var<storage, read_write> mf_out: array<f32>;

@compute @workgroup_size(256)
fn mean_fwd(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i = i + 256u) { acc = acc + mf_v[i]; }
    red[lid] = acc;
    tree_sum(lid);
    if (lid == 0u) { mf_out[0] = red[0] * p.scale; }
}

// log(1 + e) for e in [0, 1], accurate for tiny e (WGSL has no log1p).
fn log1p_small(e: f32) -> f32 {
    return select(log(1.0 + e), e * (1.0 - 0.5 * e), e < 1e-4);
}

// --- bce_fwd(x, t, out): out[0] = scale * sum(max(x, 0) - x * t + log(1 + exp(-|x|))).
// n = number of elements. One workgroup.
@group(0) @binding(1) var<storage, read> bf_x: array<f32>;
@group(0) @binding(2) var<storage, read> bf_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> bf_out: array<f32>;

@compute @workgroup_size(256)
fn bce_fwd(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i = i + 256u) {
        let x = bf_x[i];
        acc = acc + max(x, 0.0) - x * bf_t[i] + log1p_small(exp(-abs(x)));
    }
    red[lid] = acc;
    tree_sum(lid);
    if (lid == 0u) { bf_out[0] = red[0] * p.scale; }
}

// --- bce_bwd(x, t, g, gx): mode 0: d/dx = g * scale * (sigmoid(x) - t);
// mode 1: d/dt = -g * scale * x.
@group(0) @binding(1) var<storage, read> bb_x: array<f32>;
@group(0) @binding(2) var<storage, read> bb_t: array<f32>;
@group(0) @binding(3) var<storage, read> bb_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> bb_gx: array<f32>;

@compute @workgroup_size(256)
fn bce_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = row_of(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let x = bb_x[i];
    let k = bb_g[0] * p.scale;
    if (p.mode == 1u) {
        bb_gx[i] = -k * x;
        return;
    }
    // Stable sigmoid: exp of a non-positive number only.
    let e = exp(-abs(x));
    let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
    bb_gx[i] = k * (sig - bb_t[i]);
}

// --- argmax_rows(x, idx): idx[i] = first index of the maximum of row i (as f32).
// NaN entries are skipped; a row of only NaN gives 0.
@group(0) @binding(1) var<storage, read> am_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> am_idx: array<f32>;

@compute @workgroup_size(256)
fn argmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    let valid = row < p.n;
    let base = row * p.c;
    // Each lane scans its strided columns in increasing order, keeping the first maximum.
    var best = NEG_BIG;
    var bi = 0xffffffffu;
    if (valid) {
        for (var k = lid; k < p.c; k = k + 256u) {
            let v = am_x[base + k];
            if (v > best || (bi == 0xffffffffu && v == best)) {
                best = v;
                bi = k;
            }
        }
    }
    red[lid] = best;
    red_i[lid] = bi;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) {
            let ov = red[lid + w];
            let oi = red_i[lid + w];
            // Larger value wins; on equal values the smaller index (first occurrence).
            if (ov > red[lid] || (ov == red[lid] && oi < red_i[lid])) {
                red[lid] = ov;
                red_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (valid && lid == 0u) {
        let i = red_i[0];
        am_idx[row] = f32(select(i, 0u, i == 0xffffffffu));
    }
}

// --- count_equal(a, b, out): out[0] = number of i < n with a[i] == b[i]. One workgroup.
@group(0) @binding(1) var<storage, read> ce_a: array<f32>;
@group(0) @binding(2) var<storage, read> ce_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> ce_out: array<f32>;

@compute @workgroup_size(256)
fn count_equal(@builtin(local_invocation_index) lid: u32) {
    var acc = 0u;
    for (var i = lid; i < p.n; i = i + 256u) { acc = acc + select(0u, 1u, ce_a[i] == ce_b[i]); }
    red_i[lid] = acc;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w >> 1u) {
        if (lid < w) { red_i[lid] = red_i[lid] + red_i[lid + w]; }
        workgroupBarrier();
    }
    if (lid == 0u) { ce_out[0] = f32(red_i[0]); }
}
