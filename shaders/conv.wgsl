// 2-D convolution, NCHW, PyTorch semantics (stride, padding, dilation, groups, each (h, w)).
//
// Every kernel is described by the geometry of one conv2d: input x [n, cin, h, w], weight
// [cout, cin/groups, kh, kw], output y [n, cout, ho, wo]. The three big kernels are tiled
// implicit GEMMs, one group per z slice (times split-K slices for conv_wgrad):
//   conv_fwd   y  = W  * im2col(x)   M = cout/g, N = n*ho*wo,       K = cin/g*kh*kw
//   conv_dgrad dx = W^T * col(gy)    M = cin/g,  N = n*h*w,         K = cout/g*kh*kw
//   conv_wgrad dw = gy * im2col(x)^T M = cout/g, N = cin/g*kh*kw,   K = n*ho*wo
// conv_transpose2d reuses them: its forward is conv_dgrad, its input gradient conv_fwd, its
// weight gradient conv_wgrad with x and gy swapped.
//
// Tiles: BM x BN = 64 x 64 outputs per workgroup, BK = 16, 256 invocations each computing a
// 4x4 register block (rows 4*ty + i, columns 4*tx + j). The im2col gather happens while a
// tile is loaded into workgroup memory (two 4 KiB tiles), so nothing is materialised.
// Loaders and stores are bounds-checked, so any size works.

struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    // 1 when a bias is bound and added (conv_fwd, conv_dgrad).
    has_bias: u32,
    // conv_wgrad: number of K slices and the K length of each (a multiple of BK).
    splits: u32,
    kchunk: u32,
    // sum_splits: number of elements of one slice.
    total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<vec4<f32>, 256>; // [BK][BM]
var<workgroup> Bs: array<vec4<f32>, 256>; // [BK][BN]

fn set_a(i: u32, v: f32) { As[i / 4u][i % 4u] = v; }
fn set_b(i: u32, v: f32) { Bs[i / 4u][i % 4u] = v; }

// acc[i][j] += A[4 ty + i][k] * B[k][4 tx + j] over the BK slice in workgroup memory. One
// vec4 load per operand and k: lavapipe runs every workgroup load as a loop over the 8 SIMD
// lanes, so 2 vec4 loads cost far less than 8 scalar ones (~1.25x on MNIST conv2 and a
// ResNet 64->64 3x3 layer, forward and backward).
fn mma(acc_in: mat4x4<f32>, tx: u32, ty: u32) -> mat4x4<f32> {
    var acc = acc_in;
    for (var k = 0u; k < BK; k = k + 1u) {
        let a = As[k * (BM / 4u) + ty];
        let b = Bs[k * (BN / 4u) + tx];
        acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
        acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
        acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
        acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    return acc;
}

// --- conv_fwd(x, w, b, y)
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> fw: array<f32>;
@group(0) @binding(3) var<storage, read> fb: array<f32>;
@group(0) @binding(4) var<storage, read_write> fy: array<f32>;

@compute @workgroup_size(256)
fn conv_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.z;
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let khw = p.kh * p.kw;
    let kk = cg * khw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let nn = p.n * hwo;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;

    // B loader: one column per invocation, rows kb + 4 i. The column's pixel is fixed.
    let nl = lid % BN;
    let kb = lid / BN;
    let ncol = n0 + nl;
    let n_ok = ncol < nn;
    let bi = ncol / hwo;
    let rr = ncol % hwo;
    let ih0 = i32((rr / p.wo) * p.sh) - i32(p.ph);
    let iw0 = i32((rr % p.wo) * p.sw) - i32(p.pw);
    let xbase = (bi * p.cin + g * cg) * hw;
    // A loader: one k per invocation, rows ma + 16 i (weights are contiguous in k).
    let ka = lid % BK;
    let ma = lid / BK;
    let wbase = g * mg * kk;

    var acc = mat4x4<f32>();
    for (var k0 = 0u; k0 < kk; k0 = k0 + BK) {
        let k = k0 + ka;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let m = m0 + ma + 16u * i;
            var v = 0.0;
            if (m < mg && k < kk) { v = fw[wbase + m * kk + k]; }
            set_a(ka * BM + ma + 16u * i, v);
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            let kr = kb + 4u * i;
            let kx = k0 + kr;
            var v = 0.0;
            if (n_ok && kx < kk) {
                let ci = kx / khw;
                let r = kx % khw;
                let ih = ih0 + i32((r / p.kw) * p.dh);
                let iw = iw0 + i32((r % p.kw) * p.dw);
                if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
                    v = fx[xbase + ci * hw + u32(ih) * p.w + u32(iw)];
                }
            }
            set_b(kr * BN + nl, v);
        }
        workgroupBarrier();
        acc = mma(acc, tx, ty);
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + ty * 4u + i;
        if (m >= mg) { continue; }
        let co = g * mg + m;
        var bias = 0.0;
        if (p.has_bias != 0u) { bias = fb[co]; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + tx * 4u + j;
            if (n < nn) {
                let b = n / hwo;
                fy[(b * p.cout + co) * hwo + n % hwo] = acc[i][j] + bias;
            }
        }
    }
}

// --- conv_dgrad(gy, w, b, dx): dx[b, c, h, w] = sum over (co, ki, kj) with
// h + ph - ki*dh = oh*sh (divisible, 0 <= oh < ho), likewise for w, of gy[b, co, oh, ow] *
// w[co, c, ki, kj]. A gather, so no atomics. Optional bias per input channel (for
// conv_transpose2d, whose forward this is).
@group(0) @binding(1) var<storage, read> dgy: array<f32>;
@group(0) @binding(2) var<storage, read> dw_: array<f32>;
@group(0) @binding(3) var<storage, read> db: array<f32>;
@group(0) @binding(4) var<storage, read_write> ddx: array<f32>;

@compute @workgroup_size(256)
fn conv_dgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.z;
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let khw = p.kh * p.kw;
    let kk = mg * khw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let nn = p.n * hw;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;

    let nl = lid % BN;
    let kb = lid / BN;
    let ncol = n0 + nl;
    let n_ok = ncol < nn;
    let bi = ncol / hw;
    let rr = ncol % hw;
    let th0 = i32(rr / p.w) + i32(p.ph);
    let tw0 = i32(rr % p.w) + i32(p.pw);
    let gybase = (bi * p.cout + g * mg) * hwo;
    let ka = lid % BK;
    let ma = lid / BK;

    var acc = mat4x4<f32>();
    for (var k0 = 0u; k0 < kk; k0 = k0 + BK) {
        let k = k0 + ka;
        let co = k / khw;
        let kr = k % khw;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let m = m0 + ma + 16u * i;
            var v = 0.0;
            if (m < cg && k < kk) { v = dw_[((g * mg + co) * cg + m) * khw + kr]; }
            set_a(ka * BM + ma + 16u * i, v);
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            let krow = kb + 4u * i;
            let kx = k0 + krow;
            var v = 0.0;
            if (n_ok && kx < kk) {
                let c2 = kx / khw;
                let r = kx % khw;
                let th = th0 - i32((r / p.kw) * p.dh);
                let tw = tw0 - i32((r % p.kw) * p.dw);
                if (th >= 0 && tw >= 0) {
                    let oh = u32(th) / p.sh;
                    let ow = u32(tw) / p.sw;
                    if (oh * p.sh == u32(th) && ow * p.sw == u32(tw) && oh < p.ho && ow < p.wo) {
                        v = dgy[gybase + c2 * hwo + oh * p.wo + ow];
                    }
                }
            }
            set_b(krow * BN + nl, v);
        }
        workgroupBarrier();
        acc = mma(acc, tx, ty);
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + ty * 4u + i;
        if (m >= cg) { continue; }
        let c = g * cg + m;
        var bias = 0.0;
        if (p.has_bias != 0u) { bias = db[c]; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + tx * 4u + j;
            if (n < nn) {
                let b = n / hw;
                ddx[(b * p.cin + c) * hw + n % hw] = acc[i][j] + bias;
            }
        }
    }
}

// --- conv_wgrad(x, gy, part): dw[co, ci, ki, kj] = sum over (b, oh, ow) of gy[b, co, oh, ow]
// * x[b, ci, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw]. z = group * splits + slice; slice s
// sums K range [s*kchunk, (s+1)*kchunk) into part[s * total + ...] (sum_splits adds them).
@group(0) @binding(1) var<storage, read> wx: array<f32>;
@group(0) @binding(2) var<storage, read> wgy: array<f32>;
@group(0) @binding(3) var<storage, read_write> wpart: array<f32>;

@compute @workgroup_size(256)
fn conv_wgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.z / p.splits;
    let s = wid.z % p.splits;
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let khw = p.kh * p.kw;
    let ncols = cg * khw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let kk = p.n * hwo;
    let kbeg = s * p.kchunk;
    let kend = min(kk, kbeg + p.kchunk);
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;

    // B loader: column (ci, ki, kj) fixed per invocation, rows kb + 4 i are pixels.
    let nl = lid % BN;
    let kb = lid / BN;
    let ncol = n0 + nl;
    let n_ok = ncol < ncols;
    let ci = ncol / khw;
    let r = ncol % khw;
    let offh = i32((r / p.kw) * p.dh) - i32(p.ph);
    let offw = i32((r % p.kw) * p.dw) - i32(p.pw);
    let xcbase = (g * cg + ci) * hw;
    // A loader: gy rows, contiguous along k within one image.
    let ka = lid % BK;
    let ma = lid / BK;

    var acc = mat4x4<f32>();
    for (var k0 = kbeg; k0 < kend; k0 = k0 + BK) {
        let k = k0 + ka;
        let bk = k / hwo;
        let rk = k % hwo;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let m = m0 + ma + 16u * i;
            var v = 0.0;
            if (m < mg && k < kend) { v = wgy[(bk * p.cout + g * mg + m) * hwo + rk]; }
            set_a(ka * BM + ma + 16u * i, v);
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            let krow = kb + 4u * i;
            let kx = k0 + krow;
            var v = 0.0;
            if (n_ok && kx < kend) {
                let b = kx / hwo;
                let q = kx % hwo;
                let ih = i32((q / p.wo) * p.sh) + offh;
                let iw = i32((q % p.wo) * p.sw) + offw;
                if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
                    v = wx[b * p.cin * hw + xcbase + u32(ih) * p.w + u32(iw)];
                }
            }
            set_b(krow * BN + nl, v);
        }
        workgroupBarrier();
        acc = mma(acc, tx, ty);
        workgroupBarrier();
    }

    let base = s * p.total;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + ty * 4u + i;
        if (m >= mg) { continue; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + tx * 4u + j;
            if (n < ncols) {
                wpart[base + (g * mg + m) * ncols + n] = acc[i][j];
            }
        }
    }
}

// --- sum_splits(part, out): out[i] = sum over s < splits of part[s * total + i].
@group(0) @binding(1) var<storage, read> spart: array<f32>;
@group(0) @binding(2) var<storage, read_write> sout: array<f32>;

@compute @workgroup_size(256)
fn sum_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.total) { return; }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        acc = acc + spart[s * p.total + i];
    }
    sout[i] = acc;
}

// --- conv_bias_grad(gy, db): db[c] = sum over (b, oh, ow) of gy[b, c, oh, ow]. One
// workgroup per channel, lanes stride over the pixels, then a tree sum (fixed order).
@group(0) @binding(1) var<storage, read> bgy: array<f32>;
@group(0) @binding(2) var<storage, read_write> bdb: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn conv_bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let valid = c < p.cout;
    let hwo = p.ho * p.wo;
    let total = p.n * hwo;
    var acc = 0.0;
    if (valid) {
        for (var i = lid; i < total; i = i + 256u) {
            acc = acc + bgy[((i / hwo) * p.cout + c) * hwo + i % hwo];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
        workgroupBarrier();
    }
    if (valid && lid == 0u) { bdb[c] = partial[0]; }
}

// --- conv2d_naive(x, w, b, y): one output per invocation, direct loops. The benchmark's
// reference for the tiled conv_fwd.
@group(0) @binding(1) var<storage, read> nx: array<f32>;
@group(0) @binding(2) var<storage, read> nw: array<f32>;
@group(0) @binding(3) var<storage, read> nb: array<f32>;
@group(0) @binding(4) var<storage, read_write> ny: array<f32>;

@compute @workgroup_size(256)
fn conv2d_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    let hwo = p.ho * p.wo;
    if (idx >= p.n * p.cout * hwo) { return; }
    let ow = idx % p.wo;
    let oh = (idx / p.wo) % p.ho;
    let co = (idx / hwo) % p.cout;
    let b = idx / (hwo * p.cout);
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let g = co / mg;
    var acc = 0.0;
    if (p.has_bias != 0u) { acc = nb[co]; }
    for (var c = 0u; c < cg; c = c + 1u) {
        let xb = (b * p.cin + g * cg + c) * p.h * p.w;
        let wb = (co * cg + c) * p.kh * p.kw;
        for (var ki = 0u; ki < p.kh; ki = ki + 1u) {
            let ih = i32(oh * p.sh + ki * p.dh) - i32(p.ph);
            if (ih < 0 || ih >= i32(p.h)) { continue; }
            for (var kj = 0u; kj < p.kw; kj = kj + 1u) {
                let iw = i32(ow * p.sw + kj * p.dw) - i32(p.pw);
                if (iw < 0 || iw >= i32(p.w)) { continue; }
                acc = acc + nx[xb + u32(ih) * p.w + u32(iw)] * nw[wb + ki * p.kw + kj];
            }
        }
    }
    ny[idx] = acc;
}
