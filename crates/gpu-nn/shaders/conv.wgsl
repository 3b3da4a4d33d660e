// 2-D convolution, NCHW, PyTorch semantics (stride, padding, dilation, groups, each (h, w)).
//
// Every kernel is described by the geometry of one conv2d: input x [n, cin, h, w], weight
// [cout, cin/groups, kh, kw], output y [n, cout, ho, wo]. The three big kernels are tiled
// implicit GEMMs, one group per z slice (times split-K slices for conv_wgrad):
//   conv_fwd   y  = W  * im2col(x)   M = cout/g, N = n*ho*wo,       K = cin/g*kh*kw
//   conv_dgrad dx = W^T * col(gy)    M = cin/g,  N = n*h*w,         K = cout/g*kh*kw
//   conv_wgrad dw = gy * im2col(x)^T M = cout/g, N = cin/g*kh*kw,   K = n*ho*wo
// conv_transpose2d reuses them: its forward is conv_dgrad, its input gradient conv_fwd, its
// weight gradient conv_wgrad with x and gy swapped. Strided layers take col2im (below) for
// the input gradient: a matmul computes W^T gy, col2im sums each input pixel's taps.
//
// Tiles: BM x BN outputs per workgroup with BN = 64 and BM = 16, 32 or 64 (an override
// constant picked per layer, so layers with few channels do not compute padding rows), K step
// BK = 16; 4 * BM invocations, each computing a 4x4 register block (rows 4 ty + i, columns
// 4 tx + j). The im2col gather happens while a tile is loaded into workgroup memory, so
// nothing is materialised. Loaders and stores are bounds-checked, so any size works.
//
// Each invocation decodes its four columns once, each loaded row once (not once per
// element), and moves whole vec4s between registers and workgroup memory.

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
    // sum_splits: number of elements of one slice. (conv_subgroup.wgsl, which shares this
    // layout: the rows of a tap, padded.)
    total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<vec4<f32>, 256>; // [BK][BM / 4]
var<workgroup> Bs: array<vec4<f32>, 256>; // [BK][BN / 4]

// acc[i][j] += A[4 ty + i][k] * B[k][4 tx + j] over the BK slice in workgroup memory.
fn mma(acc_in: mat4x4<f32>, tx: u32, ty: u32) -> mat4x4<f32> {
    var acc = acc_in;
    let mb = BM / 4u;
    for (var k = 0u; k < BK; k = k + 1u) {
        let a = As[k * mb + ty];
        let b = Bs[k * 16u + tx];
        acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
        acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
        acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
        acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    return acc;
}

// Four loads at (possibly out-of-range) indices, zero where `ok` is false. Out-of-range
// storage reads are defined in WebGPU; their values are discarded by the select.
fn gather_fx(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    let v = vec4<f32>(fx[u32(idx.x)], fx[u32(idx.y)], fx[u32(idx.z)], fx[u32(idx.w)]);
    return select(vec4<f32>(0.0), v, ok);
}

// --- conv_fwd(x, w, b, y)
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> fw: array<f32>;
@group(0) @binding(3) var<storage, read> fb: array<f32>;
@group(0) @binding(4) var<storage, read_write> fy: array<f32>;

@compute @workgroup_size(BM * 4u)
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

    // This invocation's four columns (output pixels): B loads and y stores both use them.
    let col = vec4<u32>(n0 + 4u * tx) + vec4<u32>(0u, 1u, 2u, 3u);
    let cok = col < vec4<u32>(nn);
    let bi = col / hwo;
    let rr = col - bi * hwo;
    let oh = rr / p.wo;
    let ow = rr - oh * p.wo;
    let ih0 = vec4<i32>(oh * p.sh) - i32(p.ph);
    let iw0 = vec4<i32>(ow * p.sw) - i32(p.pw);
    let xbase = vec4<i32>((bi * p.cin + g * cg) * hw);
    let ybase = bi * p.cout * hwo + rr;
    // A loader: one k per invocation, four consecutive rows 4 ty .. 4 ty + 3.
    let ma = vec4<u32>(m0 + 4u * ty) + vec4<u32>(0u, 1u, 2u, 3u);
    let mok = ma < vec4<u32>(mg);
    let wrow = (g * mg + ma) * kk;

    var acc = mat4x4<f32>();
    for (var k0 = 0u; k0 < kk; k0 = k0 + BK) {
        let ka = k0 + tx;
        let aidx = wrow + ka;
        let av = vec4<f32>(fw[aidx.x], fw[aidx.y], fw[aidx.z], fw[aidx.w]);
        As[tx * (BM / 4u) + ty] = select(vec4<f32>(0.0), av, mok & vec4<bool>(ka < kk));
        for (var r = ty; r < BK; r = r + BM / 4u) {
            let kx = k0 + r;
            let ci = kx / khw;
            let rem = kx - ci * khw;
            let ki = rem / p.kw;
            let kj = rem - ki * p.kw;
            let ih = ih0 + i32(ki * p.dh);
            let iw = iw0 + i32(kj * p.dw);
            let ok = cok & vec4<bool>(kx < kk) & inside(ih, p.h) & inside(iw, p.w);
            Bs[r * 16u + tx] = gather_fx(xbase + i32(ci * hw) + ih * i32(p.w) + iw, ok);
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
        let v = acc[i] + bias;
        let yi = ybase + co * hwo;
        if (cok.x) { fy[yi.x] = v.x; }
        if (cok.y) { fy[yi.y] = v.y; }
        if (cok.z) { fy[yi.z] = v.z; }
        if (cok.w) { fy[yi.w] = v.w; }
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

// Output rows (oh) of input-gradient taps t = pixel + pad - k*dil: t / s where the stride
// divides t, else -1 (no output row).
fn tap_rows(t: vec4<i32>, s: u32) -> vec4<i32> {
    // Stride 1 needs no division (lavapipe has no vector integer division).
    if (s == 1u) { return t; }
    let q = t / vec4<i32>(i32(s));
    return select(vec4<i32>(-1), q, q * i32(s) == t);
}

@compute @workgroup_size(BM * 4u)
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

    // This invocation's four columns (input pixels).
    let col = vec4<u32>(n0 + 4u * tx) + vec4<u32>(0u, 1u, 2u, 3u);
    let cok = col < vec4<u32>(nn);
    let bi = col / hw;
    let rr = col - bi * hw;
    let hp = rr / p.w;
    let th0 = vec4<i32>(hp) + i32(p.ph);
    let tw0 = vec4<i32>(rr - hp * p.w) + i32(p.pw);
    let gybase = vec4<i32>((bi * p.cout + g * mg) * hwo);
    let xbase = bi * p.cin * hw + rr;
    // A loader: one k per invocation, four consecutive rows (input channels).
    let ma = vec4<u32>(m0 + 4u * ty) + vec4<u32>(0u, 1u, 2u, 3u);
    let mok = ma < vec4<u32>(cg);

    var acc = mat4x4<f32>();
    for (var k0 = 0u; k0 < kk; k0 = k0 + BK) {
        let ka = k0 + tx;
        let coa = ka / khw;
        let aidx = ((g * mg + coa) * cg + ma) * khw + (ka - coa * khw);
        let av = vec4<f32>(dw_[aidx.x], dw_[aidx.y], dw_[aidx.z], dw_[aidx.w]);
        As[tx * (BM / 4u) + ty] = select(vec4<f32>(0.0), av, mok & vec4<bool>(ka < kk));
        for (var r = ty; r < BK; r = r + BM / 4u) {
            let kx = k0 + r;
            let c2 = kx / khw;
            let rem = kx - c2 * khw;
            let ki = rem / p.kw;
            let kj = rem - ki * p.kw;
            let oh = tap_rows(th0 - i32(ki * p.dh), p.sh);
            let ow = tap_rows(tw0 - i32(kj * p.dw), p.sw);
            let ok = cok & vec4<bool>(kx < kk) & inside(oh, p.ho) & inside(ow, p.wo);
            let idx = gybase + i32(c2 * hwo) + oh * i32(p.wo) + ow;
            let v = vec4<f32>(dgy[u32(idx.x)], dgy[u32(idx.y)], dgy[u32(idx.z)], dgy[u32(idx.w)]);
            Bs[r * 16u + tx] = select(vec4<f32>(0.0), v, ok);
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
        let v = acc[i] + bias;
        let xi = xbase + c * hw;
        if (cok.x) { ddx[xi.x] = v.x; }
        if (cok.y) { ddx[xi.y] = v.y; }
        if (cok.z) { ddx[xi.z] = v.z; }
        if (cok.w) { ddx[xi.w] = v.w; }
    }
}

// --- conv_wgrad(x, gy, part): dw[co, ci, ki, kj] = sum over (b, oh, ow) of gy[b, co, oh, ow]
// * x[b, ci, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw]. z = group * splits + slice; slice s
// sums K range [s*kchunk, (s+1)*kchunk) into part[s * total + ...] (sum_splits adds them).
@group(0) @binding(1) var<storage, read> wx: array<f32>;
@group(0) @binding(2) var<storage, read> wgy: array<f32>;
@group(0) @binding(3) var<storage, read_write> wpart: array<f32>;

@compute @workgroup_size(BM * 4u)
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

    // This invocation's four columns (ci, ki, kj): fixed offsets into x.
    let col = vec4<u32>(n0 + 4u * tx) + vec4<u32>(0u, 1u, 2u, 3u);
    let cok = col < vec4<u32>(ncols);
    let ci = col / khw;
    let rem = col - ci * khw;
    let ki = rem / p.kw;
    let offh = vec4<i32>(ki * p.dh) - i32(p.ph);
    let offw = vec4<i32>((rem - ki * p.kw) * p.dw) - i32(p.pw);
    let xcbase = vec4<i32>((g * cg + ci) * hw);
    // A loader: one k (pixel) per invocation, four consecutive rows (output channels).
    let ma = vec4<u32>(m0 + 4u * ty) + vec4<u32>(0u, 1u, 2u, 3u);
    let mok = ma < vec4<u32>(mg);

    var acc = mat4x4<f32>();
    for (var k0 = kbeg; k0 < kend; k0 = k0 + BK) {
        let ka = k0 + tx;
        let ba = ka / hwo;
        let aidx = (ba * p.cout + g * mg + ma) * hwo + (ka - ba * hwo);
        let av = vec4<f32>(wgy[aidx.x], wgy[aidx.y], wgy[aidx.z], wgy[aidx.w]);
        As[tx * (BM / 4u) + ty] = select(vec4<f32>(0.0), av, mok & vec4<bool>(ka < kend));
        for (var r = ty; r < BK; r = r + BM / 4u) {
            let kx = k0 + r;
            let b = kx / hwo;
            let q = kx - b * hwo;
            let oh = q / p.wo;
            let ih = offh + i32(oh * p.sh);
            let iw = offw + i32((q - oh * p.wo) * p.sw);
            let ok = cok & vec4<bool>(kx < kend) & inside(ih, p.h) & inside(iw, p.w);
            let idx = xcbase + i32(b * p.cin * hw) + ih * i32(p.w) + iw;
            let v = vec4<f32>(wx[u32(idx.x)], wx[u32(idx.y)], wx[u32(idx.z)], wx[u32(idx.w)]);
            Bs[r * 16u + tx] = select(vec4<f32>(0.0), v, ok);
        }
        workgroupBarrier();
        acc = mma(acc, tx, ty);
        workgroupBarrier();
    }

    let base = s * p.total;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + ty * 4u + i;
        if (m >= mg) { continue; }
        let v = acc[i];
        let oi = base + (g * mg + m) * ncols + col;
        if (cok.x) { wpart[oi.x] = v.x; }
        if (cok.y) { wpart[oi.y] = v.y; }
        if (cok.z) { wpart[oi.z] = v.z; }
        if (cok.w) { wpart[oi.w] = v.w; }
    }
}

// --- sum_splits(part, out): out[i] = sum over s < splits of part[s * total + i].
@group(0) @binding(1) var<storage, read> spart: array<f32>;
@group(0) @binding(2) var<storage, read_write> sout: array<f32>;

@compute @workgroup_size(256)
fn sum_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
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
// Invocations per workgroup: 64, since SwiftShader runs a workgroup's lane groups as
// coroutines that switch at every barrier, and a tree over 256 lanes has more of them.
const BG: u32 = 64u;

var<workgroup> partial: array<f32, BG>;

// Tree sum (fixed order) of every lane's `acc` into db[c]; called in uniform control flow.
fn store_channel_sum(lid: u32, valid: bool, c: u32, acc: f32) {
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = BG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
        workgroupBarrier();
    }
    if (valid && lid == 0u) { bdb[c] = partial[0]; }
}

@compute @workgroup_size(BG)
fn conv_bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let valid = c < p.cout;
    let hwo = p.ho * p.wo;
    let total = p.n * hwo;
    var acc = 0.0;
    if (valid) {
        // Pixel i = lid + BG t as (image b, offset q), carried without dividing per step.
        var b = lid / hwo;
        var q = lid - b * hwo;
        let db_step = BG / hwo;
        let dq_step = BG - db_step * hwo;
        for (var i = lid; i < total; i = i + BG) {
            acc = acc + bgy[(b * p.cout + c) * hwo + q];
            b = b + db_step;
            q = q + dq_step;
            if (q >= hwo) {
                q = q - hwo;
                b = b + 1u;
            }
        }
    }
    store_channel_sum(lid, valid, c, acc);
}

// --- conv_bias_grad4(gy, db): conv_bias_grad for ho * wo % 4 == 0 (a channel's planes are
// then whole texels), reading gy a texel per load (`Gpu::dispatch_texels`): on lavapipe
// from an operand texture, whose gathers cost a fraction of a storage load with a per-lane
// address; elsewhere from gy's buffer.
@group(0) @binding(1) var bgy4: texture_2d<f32>;

@compute @workgroup_size(BG)
fn conv_bias_grad4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    let valid = c < p.cout;
    let hwo = p.ho * p.wo / 4u;
    let total = p.n * hwo;
    var acc = vec4<f32>(0.0);
    if (valid) {
        var b = lid / hwo;
        var q = lid - b * hwo;
        let db_step = BG / hwo;
        let dq_step = BG - db_step * hwo;
        for (var i = lid; i < total; i = i + BG) {
            acc = acc + texel4(bgy4, (b * p.cout + c) * hwo + q);
            b = b + db_step;
            q = q + dq_step;
            if (q >= hwo) {
                q = q - hwo;
                b = b + 1u;
            }
        }
    }
    store_channel_sum(lid, valid, c, (acc.x + acc.y) + (acc.z + acc.w));
}

// --- col2im(cols, b, dx): the input gradient's second half where it goes through a GEMM
// (`dgrad_gemm`: layers with strides, or small outputs of wide kernels, where most taps of
// conv_dgrad's gather are empty). cols is [n, cin*kh*kw, ho*wo] = W^T gy per image;
// dx[b, c, ih, iw] = bias[c] + the sum over taps (ki, kj) that reach an output pixel
// (ih + ph - ki*dh = oh*sh, likewise for w) of cols[b, (c kh + ki) kw + kj, oh wo + ow].
// One input pixel per invocation, 1-D grid.
@group(0) @binding(1) var<storage, read> ccols: array<f32>;
@group(0) @binding(2) var<storage, read> cb: array<f32>;
@group(0) @binding(3) var<storage, read_write> cdx: array<f32>;

// The output index t / s reached by tap offset t, or -1 where there is none (t < 0, the
// stride does not divide t, or t / s >= lim).
fn tap_index(t: i32, s: u32, lim: u32) -> i32 {
    if (t < 0) { return -1; }
    let q = udivmod(u32(t), s);
    if (q.y != 0u || q.x >= lim) { return -1; }
    return i32(q.x);
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let idx = linear(wid, nwg, lid);
    let hw = p.h * p.w;
    if (idx >= p.n * p.cin * hw) { return; }
    let plane = udivmod(idx, hw); // (b * cin + c, pixel)
    let hp = udivmod(plane.y, p.w); // (ih, iw)
    let c = plane.x - udiv(plane.x, p.cin) * p.cin;
    let hwo = p.ho * p.wo;
    let base = plane.x * p.kh * p.kw * hwo;
    var acc = 0.0;
    if (p.has_bias != 0u) { acc = cb[c]; }
    let th = i32(hp.x + p.ph);
    let tw = i32(hp.y + p.pw);
    // Only every stride-th tap can reach an output pixel; with dilation 1 those are the
    // taps from th % sh on (a 4x shorter loop at stride 2).
    var ki0 = 0u;
    var kis = 1u;
    if (p.dh == 1u) {
        ki0 = udivmod(u32(th), p.sh).y;
        kis = p.sh;
    }
    var kj0 = 0u;
    var kjs = 1u;
    if (p.dw == 1u) {
        kj0 = udivmod(u32(tw), p.sw).y;
        kjs = p.sw;
    }
    for (var ki = ki0; ki < p.kh; ki = ki + kis) {
        let oh = tap_index(th - i32(ki * p.dh), p.sh, p.ho);
        if (oh < 0) { continue; }
        let rowb = base + ki * p.kw * hwo + u32(oh) * p.wo;
        for (var kj = kj0; kj < p.kw; kj = kj + kjs) {
            let ow = tap_index(tw - i32(kj * p.dw), p.sw, p.wo);
            if (ow < 0) { continue; }
            acc = acc + ccols[rowb + kj * hwo + u32(ow)];
        }
    }
    cdx[idx] = acc;
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
    let idx = linear(wid, nwg, lid);
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
