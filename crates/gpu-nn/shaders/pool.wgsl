// 2-D pooling over NCHW planes with PyTorch's semantics: max (argmax, dilation), average
// (count_include_pad, ceil-mode divisor clipping) and adaptive average. Forward kernels run
// one invocation per output element, backward kernels one per input element gathering over
// the output windows that can contain it (deterministic, no atomics; the sum runs in output
// order, the order PyTorch's scatter adds in). Exactly tiling max windows have their own
// pair (max_tiled_*), one invocation per output both ways.
// Dispatch: 1-D, 256 per workgroup; the linear index folds in y (see Gpu::dispatch).

struct Params {
    n: u32,      // invocations: planes * oh * ow (forward) or planes * h * w (backward)
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    include_pad: u32,
    neg_inf: f32, // -inf, passed in because WGSL has no infinite literal
}

@group(0) @binding(0) var<uniform> p: Params;

// First tap >= 0 of a window starting at `s` with taps every `d`.
fn first_tap(s: i32, d: i32) -> i32 {
    if (s >= 0) { return s; }
    return s + i32(udiv(u32(-s + d - 1), u32(d))) * d;
}

// Whether tap value v replaces the window's maximum so far: strictly greater keeps the
// first of ties; every NaN wins (the last one stays).
fn takes_max(found: bool, v: f32, best: f32) -> bool {
    return !found || v > best || is_nan(v);
}

// --- max_fwd(x, y, argmax)
@group(0) @binding(1) var<storage, read> mx: array<f32>;
@group(0) @binding(2) var<storage, read_write> my: array<f32>;
@group(0) @binding(3) var<storage, read_write> midx: array<f32>;

@compute @workgroup_size(256)
fn max_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let qx = udivmod(i, p.ow);
    let ox = qx.y;
    let qy = udivmod(qx.x, p.oh);
    let oy = qy.y;
    let plane = qy.x;
    let base = plane * p.h * p.w;
    let dh = i32(p.dh);
    let dw = i32(p.dw);
    let hs = i32(oy * p.sh) - i32(p.ph);
    let ws = i32(ox * p.sw) - i32(p.pw);
    let he = min(hs + i32((p.kh - 1u) * p.dh + 1u), i32(p.h));
    let we = min(ws + i32((p.kw - 1u) * p.dw + 1u), i32(p.w));
    // PyTorch starts from the first in-bounds tap; a window whose taps all fall in the
    // padding keeps -inf (and gets argmax -1, so no gradient).
    var best = p.neg_inf;
    var arg = -1.0;
    var found = false;
    for (var y = first_tap(hs, dh); y < he; y += dh) {
        for (var x = first_tap(ws, dw); x < we; x += dw) {
            let k = u32(y) * p.w + u32(x);
            let v = mx[base + k];
            if (takes_max(found, v, best)) {
                best = v;
                arg = f32(k);
                found = true;
            }
        }
    }
    my[i] = best;
    midx[i] = arg;
}

// Output rows [lo, hi] whose windows (start o*s - pad, taps every d, k taps) can reach row y.
fn out_range(y: u32, s: u32, pad: u32, k: u32, d: u32, n_out: u32) -> vec2<i32> {
    let hi = min(i32(udiv(y + pad, s)), i32(n_out) - 1);
    let num = i32(y + pad) - i32((k - 1u) * d);
    var lo = 0;
    if (num > 0) { lo = i32(udiv(u32(num) + s - 1u, s)); }
    return vec2<i32>(lo, hi);
}

// --- max_bwd(gy, argmax, gx)
@group(0) @binding(1) var<storage, read> mbgy: array<f32>;
@group(0) @binding(2) var<storage, read> mbidx: array<f32>;
@group(0) @binding(3) var<storage, read_write> mbgx: array<f32>;

@compute @workgroup_size(256)
fn max_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let qx = udivmod(i, p.w);
    let x = qx.y;
    let qy = udivmod(qx.x, p.h);
    let y = qy.y;
    let plane = qy.x;
    let target_idx = f32(y * p.w + x); // exact: the launcher keeps h * w below 2^24
    let ry = out_range(y, p.sh, p.ph, p.kh, p.dh, p.oh);
    let rx = out_range(x, p.sw, p.pw, p.kw, p.dw, p.ow);
    let obase = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = ry.x; oy <= ry.y; oy++) {
        for (var ox = rx.x; ox <= rx.y; ox++) {
            let o = obase + u32(oy) * p.ow + u32(ox);
            if (mbidx[o] == target_idx) { acc += mbgy[o]; }
        }
    }
    mbgx[i] = acc;
}

// --- max_tiled_fwd(x, y, argmax) and max_tiled_bwd(gy, argmax, gx): windows that tile the
// plane exactly (stride = kernel, no padding, no dilation, H = oh * kh, W = ow * kw, as in
// the classic 2x2 pooling). One invocation per output in both directions: the backward
// writes its window, since no other window reaches it. Same results as max_fwd / max_bwd.
@group(0) @binding(1) var<storage, read> tx: array<f32>;
@group(0) @binding(2) var<storage, read_write> ty: array<f32>;
@group(0) @binding(3) var<storage, read_write> tidx: array<f32>;

@compute @workgroup_size(256)
fn max_tiled_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    // Output row r = plane * oh + oy starts input row r * kh of the same plane.
    let q = udivmod(i, p.ow);
    let row0 = q.x * p.kh * p.w + q.y * p.kw;
    let plane0 = udiv(q.x, p.oh) * p.h * p.w;
    var best = p.neg_inf;
    var arg = -1.0;
    var found = false;
    for (var y = 0u; y < p.kh; y++) {
        for (var x = 0u; x < p.kw; x++) {
            let e = row0 + y * p.w + x;
            let v = tx[e];
            if (takes_max(found, v, best)) {
                best = v;
                arg = f32(e - plane0);
                found = true;
            }
        }
    }
    ty[i] = best;
    tidx[i] = arg;
}

@group(0) @binding(1) var<storage, read> tbgy: array<f32>;
@group(0) @binding(2) var<storage, read> tbidx: array<f32>;
@group(0) @binding(3) var<storage, read_write> tbgx: array<f32>;

@compute @workgroup_size(256)
fn max_tiled_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let q = udivmod(i, p.ow);
    let row0 = q.x * p.kh * p.w + q.y * p.kw;
    let plane0 = udiv(q.x, p.oh) * p.h * p.w;
    let g = tbgy[i];
    let arg = tbidx[i];
    for (var y = 0u; y < p.kh; y++) {
        for (var x = 0u; x < p.kw; x++) {
            let e = row0 + y * p.w + x;
            tbgx[e] = select(0.0, g, f32(e - plane0) == arg);
        }
    }
}

// PyTorch's avg_pool2d divisor of output (oy, ox): the window clipped to the padded input
// (ceil mode can run past it), then, without count_include_pad, to the input itself.
fn avg_divisor(oy: u32, ox: u32) -> f32 {
    let hs = i32(oy * p.sh) - i32(p.ph);
    let ws = i32(ox * p.sw) - i32(p.pw);
    let he = min(hs + i32(p.kh), i32(p.h + p.ph));
    let we = min(ws + i32(p.kw), i32(p.w + p.pw));
    if (p.include_pad != 0u) {
        return f32((he - hs) * (we - ws));
    }
    let h0 = max(hs, 0);
    let w0 = max(ws, 0);
    let h1 = min(he, i32(p.h));
    let w1 = min(we, i32(p.w));
    return f32(max(h1 - h0, 0) * max(w1 - w0, 0));
}

// --- avg_fwd(x, y)
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read_write> ay: array<f32>;

@compute @workgroup_size(256)
fn avg_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let qx = udivmod(i, p.ow);
    let ox = qx.y;
    let qy = udivmod(qx.x, p.oh);
    let oy = qy.y;
    let plane = qy.x;
    let base = plane * p.h * p.w;
    let hs = i32(oy * p.sh) - i32(p.ph);
    let ws = i32(ox * p.sw) - i32(p.pw);
    let h0 = max(hs, 0);
    let w0 = max(ws, 0);
    let h1 = min(hs + i32(p.kh), i32(p.h));
    let w1 = min(ws + i32(p.kw), i32(p.w));
    if (h0 >= h1 || w0 >= w1) {
        // Cannot happen under the launcher's checks; PyTorch writes 0 here.
        ay[i] = 0.0;
        return;
    }
    var acc = 0.0;
    for (var y = h0; y < h1; y++) {
        for (var x = w0; x < w1; x++) {
            acc += ax[base + u32(y) * p.w + u32(x)];
        }
    }
    ay[i] = acc / avg_divisor(oy, ox);
}

// --- avg_bwd(gy, gx)
@group(0) @binding(1) var<storage, read> abgy: array<f32>;
@group(0) @binding(2) var<storage, read_write> abgx: array<f32>;

@compute @workgroup_size(256)
fn avg_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let qx = udivmod(i, p.w);
    let x = qx.y;
    let qy = udivmod(qx.x, p.h);
    let y = qy.y;
    let plane = qy.x;
    // Windows have no dilation: d = 1. Every window with start <= y < start + k holds y
    // (the padded-input clip never cuts below the input).
    let ry = out_range(y, p.sh, p.ph, p.kh, 1u, p.oh);
    let rx = out_range(x, p.sw, p.pw, p.kw, 1u, p.ow);
    let obase = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = ry.x; oy <= ry.y; oy++) {
        for (var ox = rx.x; ox <= rx.y; ox++) {
            acc += abgy[obase + u32(oy) * p.ow + u32(ox)] / avg_divisor(u32(oy), u32(ox));
        }
    }
    abgx[i] = acc;
}

// Adaptive windows: [floor(o * n / n_out), ceil((o + 1) * n / n_out)).
fn ad_start(o: u32, n: u32, n_out: u32) -> u32 {
    return udiv(o * n, n_out);
}
fn ad_end(o: u32, n: u32, n_out: u32) -> u32 {
    return udiv((o + 1u) * n + n_out - 1u, n_out);
}

// --- adaptive_fwd(x, y)
@group(0) @binding(1) var<storage, read> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;

@compute @workgroup_size(256)
fn adaptive_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let qx = udivmod(i, p.ow);
    let ox = qx.y;
    let qy = udivmod(qx.x, p.oh);
    let oy = qy.y;
    let plane = qy.x;
    let base = plane * p.h * p.w;
    let h0 = ad_start(oy, p.h, p.oh);
    let h1 = ad_end(oy, p.h, p.oh);
    let w0 = ad_start(ox, p.w, p.ow);
    let w1 = ad_end(ox, p.w, p.ow);
    var acc = 0.0;
    for (var y = h0; y < h1; y++) {
        for (var x = w0; x < w1; x++) {
            acc += dx[base + y * p.w + x];
        }
    }
    dy[i] = acc / f32((h1 - h0) * (w1 - w0));
}

// --- adaptive_bwd(gy, gx)
@group(0) @binding(1) var<storage, read> dbgy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbgx: array<f32>;

@compute @workgroup_size(256)
fn adaptive_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= p.n) { return; }
    let qx = udivmod(i, p.w);
    let x = qx.y;
    let qy = udivmod(qx.x, p.h);
    let y = qy.y;
    let plane = qy.x;
    // Outputs whose windows hold y: [floor(y * oh / h), ceil((y + 1) * oh / h)), checked
    // again against the windows themselves.
    let oy0 = ad_start(y, p.oh, p.h);
    let oy1 = min(ad_end(y, p.oh, p.h), p.oh);
    let ox0 = ad_start(x, p.ow, p.w);
    let ox1 = min(ad_end(x, p.ow, p.w), p.ow);
    let obase = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        let h0 = ad_start(oy, p.h, p.oh);
        let h1 = ad_end(oy, p.h, p.oh);
        if (y < h0 || y >= h1) { continue; }
        for (var ox = ox0; ox < ox1; ox++) {
            let w0 = ad_start(ox, p.w, p.ow);
            let w1 = ad_end(ox, p.w, p.ow);
            if (x < w0 || x >= w1) { continue; }
            acc += dbgy[obase + oy * p.ow + ox] / f32((h1 - h0) * (w1 - w0));
        }
    }
    dbgx[i] = acc;
}
