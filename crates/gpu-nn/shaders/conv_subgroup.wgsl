// 2-D convolution kernels for CPU drivers with subgroups of at least 4 lanes (lavapipe: 8,
// SwiftShader: 4). Same geometry and Params as conv.wgsl, which holds the portable
// kernels; this file is separate because a module that uses subgroup operations does not
// validate on devices without the feature.
//
// Why: on lavapipe (Mesa 22.3) a storage-buffer load whose address differs per invocation
// runs as a loop over the SIMD lanes, a branch and a store-forwarding stall per lane, so a
// kernel costs what it loads. Here a workgroup owns L NB output rows (channels, L = LANES) and
// 64 invocations x 4 columns (pixels). The row operand (weights; gy for the weight
// gradient) is packed first (conv_pack_w, at the end) so that at each k the tile's L NB rows
// are neighbours: lanes 0..L NB/4-1 each load one texel of four rows and `subgroupBroadcast`
// hands them to all lanes (a register shuffle), so each k costs 1 + 4 loads for 4 L NB
// multiply-adds, with no workgroup memory and no barriers. The
// loads go through `texel` (common.wgsl): on lavapipe they read rgba32float textures, which
// it fetches with branch-free gathers, faster than storage loads; elsewhere (SwiftShader)
// the operands' buffers. The k loops run over (channel, kernel row, kernel
// column) directly, so no index is divided inside them.

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
    has_bias: u32,
    splits: u32,
    kchunk: u32,
    total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Output rows per workgroup: NB blocks of LANES (1 to 4, picked per layer: more rows
// share each loaded column, fewer rows waste less on layers with few channels). Lanes
// 0..LANES-1 of each subgroup load one row of each block for everyone.
override NB: u32 = 1u;
// Set when each invocation's four columns are neighbours in one row: conv_fwd_sg with
// stride and dilation 1 along w and wo % 4 == 0; conv_dgrad_sg with stride 1 along both
// axes, dilation 1 along w and w % 4 == 0.
override ROW: bool = false;
const WG: u32 = 64u;
// Rows per block, one per lane that loads them: 8, or 4 where subgroups have 4 lanes
// (SwiftShader). Set per device by `Gpu`.
override LANES: u32 = 8u;

// Eight accumulator rows of four columns each.
struct Acc {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
}

// acc.r(i) += lo[i] * b for i < 4 and hi[i - 4] * b for 4 <= i < 8: lo and hi hold four
// rows' values each, broadcast from the lane that loaded them.
fn rank4(acc: ptr<function, Acc>, lo: vec4<f32>, hi: vec4<f32>, b: vec4<f32>) {
    (*acc).r0 = fma(vec4<f32>(lo.x), b, (*acc).r0);
    (*acc).r1 = fma(vec4<f32>(lo.y), b, (*acc).r1);
    (*acc).r2 = fma(vec4<f32>(lo.z), b, (*acc).r2);
    (*acc).r3 = fma(vec4<f32>(lo.w), b, (*acc).r3);
    if (LANES > 4u) {
        (*acc).r4 = fma(vec4<f32>(hi.x), b, (*acc).r4);
        (*acc).r5 = fma(vec4<f32>(hi.y), b, (*acc).r5);
        (*acc).r6 = fma(vec4<f32>(hi.z), b, (*acc).r6);
        (*acc).r7 = fma(vec4<f32>(hi.w), b, (*acc).r7);
    }
}

// One tap of a whole tile: acc(j).r(i) += A[LANES j + i] * b, where the tile's LANES NB
// weights of this tap sit four to a lane (rows 4 l .. 4 l + 3 in lane l's `wv`, as
// conv_pack_w lays them out). The lanes are literals (subgroupBroadcast wants constants).
fn rank1_tile(a0: ptr<function, Acc>, a1: ptr<function, Acc>, a2: ptr<function, Acc>,
              a3: ptr<function, Acc>, wv: vec4<f32>, b: vec4<f32>) {
    if (LANES > 4u) {
        rank4(a0, subgroupBroadcast(wv, 0u), subgroupBroadcast(wv, 1u), b);
        if (NB > 1u) { rank4(a1, subgroupBroadcast(wv, 2u), subgroupBroadcast(wv, 3u), b); }
        if (NB > 2u) { rank4(a2, subgroupBroadcast(wv, 4u), subgroupBroadcast(wv, 5u), b); }
        if (NB > 3u) { rank4(a3, subgroupBroadcast(wv, 6u), subgroupBroadcast(wv, 7u), b); }
    } else {
        rank4(a0, subgroupBroadcast(wv, 0u), wv, b);
        if (NB > 1u) { rank4(a1, subgroupBroadcast(wv, 1u), wv, b); }
        if (NB > 2u) { rank4(a2, subgroupBroadcast(wv, 2u), wv, b); }
        if (NB > 3u) { rank4(a3, subgroupBroadcast(wv, 3u), wv, b); }
    }
}

// The texel of packed weights (conv_pack_w: rows padded to p.total, a multiple of LANES NB)
// that this lane loads: its four rows of the tile starting at row m0, at tap 0 of block t.
// Lanes past the tile's LANES NB / 4 load the last texel again (any valid address would do).
fn packed_texel(t: u32, taps: u32, m0: u32, lane: u32) -> u32 {
    let per_lane = min(lane % LANES, LANES * NB / 4u - 1u);
    return (t * taps * p.total + m0) / 4u + per_lane;
}

// Row i (< LANES NB) of the four accumulators.
fn row_of(a0: Acc, a1: Acc, a2: Acc, a3: Acc, i: u32) -> vec4<f32> {
    switch i / LANES {
        case 0u: { return acc_row(a0, i % LANES); }
        case 1u: { return acc_row(a1, i % LANES); }
        case 2u: { return acc_row(a2, i % LANES); }
        default: { return acc_row(a3, i % LANES); }
    }
}

fn acc_row(acc: Acc, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return acc.r0; }
        case 1u: { return acc.r1; }
        case 2u: { return acc.r2; }
        case 3u: { return acc.r3; }
        case 4u: { return acc.r4; }
        case 5u: { return acc.r5; }
        case 6u: { return acc.r6; }
        default: { return acc.r7; }
    }
}

// --- conv_fwd_sg(x, w, b, y): grid (ceil(n*ho*wo / 256), ceil(cout/groups / LANES NB), groups).
@group(0) @binding(1) var fx: texture_2d<f32>;
// fw: the weights packed by conv_pack_w.
@group(0) @binding(2) var fw: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> fb: array<f32>;
@group(0) @binding(4) var<storage, read_write> fy: array<f32>;

// Masked loads: lanes (and components) whose tap is outside the image or whose row is past
// the matrix read 0 (selects, so every lane runs the same code).
fn gather_fx(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    v.x = select(0.0, texel(fx, u32(idx.x)), ok.x);
    v.y = select(0.0, texel(fx, u32(idx.y)), ok.y);
    v.z = select(0.0, texel(fx, u32(idx.z)), ok.z);
    v.w = select(0.0, texel(fx, u32(idx.w)), ok.w);
    return v;
}

@compute @workgroup_size(WG)
fn conv_fwd_sg(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(subgroup_invocation_id) lane: u32) {
    let g = wid.z;
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let kk = cg * p.kh * p.kw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let nn = p.n * hwo;
    let m0 = wid.y * LANES * NB;

    // This invocation's four columns (output pixels).
    let col = vec4<u32>(wid.x * WG * 4u + 4u * lid) + vec4<u32>(0u, 1u, 2u, 3u);
    let cok = col < vec4<u32>(nn);
    let bi = col / hwo;
    let rr = col - bi * hwo;
    let oh = rr / p.wo;
    let ih0 = vec4<i32>(oh * p.sh) - i32(p.ph);
    let iw0 = vec4<i32>((rr - oh * p.wo) * p.sw) - i32(p.pw);
    let xbase = vec4<i32>((bi * p.cin + g * cg) * hw);
    // The texel of weights this lane loads for the subgroup at tap k: wq + k * tstep.
    let wq = packed_texel(g, kk, m0, lane);
    let tstep = p.total / 4u;

    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    var acc3: Acc;
    var k = 0u;
    for (var ci = 0u; ci < cg; ci = ci + 1u) {
        let xc = xbase + i32(ci * hw);
        for (var ki = 0u; ki < p.kh; ki = ki + 1u) {
            let ih = ih0 + i32(ki * p.dh);
            let hok = cok & inside(ih, p.h);
            let xrow = xc + ih * i32(p.w);
            // ROW: the four columns are neighbours in one output row, so tap kj + 1 sees
            // three of tap kj's inputs again; slide the window by one new load per tap.
            var b = vec4<f32>(0.0);
            if (ROW) { b = gather_fx(xrow + iw0, hok & inside(iw0, p.w)); }
            for (var kj = 0u; kj < p.kw; kj = kj + 1u) {
                if (!ROW) {
                    let iw = iw0 + i32(kj * p.dw);
                    b = gather_fx(xrow + iw, hok & inside(iw, p.w));
                } else if (kj > 0u) {
                    let np = iw0.w + i32(kj);
                    var nv = 0.0;
                    nv = select(0.0, texel(fx, u32(xrow.w + np)), hok.w && np < i32(p.w));
                    b = vec4<f32>(b.yzw, nv);
                }
                rank1_tile(&acc0, &acc1, &acc2, &acc3, texel4(fw, wq + k * tstep), b);
                k = k + 1u;
            }
        }
    }

    let ybase = bi * p.cout * hwo + rr;
    for (var i = 0u; i < LANES * NB; i = i + 1u) {
        let m = m0 + i;
        if (m >= mg) { break; }
        let co = g * mg + m;
        var bias = 0.0;
        if (p.has_bias != 0u) { bias = fb[co]; }
        let v = row_of(acc0, acc1, acc2, acc3, i) + bias;
        let yi = ybase + co * hwo;
        if (cok.x) { fy[yi.x] = v.x; }
        if (cok.y) { fy[yi.y] = v.y; }
        if (cok.z) { fy[yi.z] = v.z; }
        if (cok.w) { fy[yi.w] = v.w; }
    }
}

// --- conv_dgrad_sg(gy, w, b, dx): the input gradient as in conv.wgsl's conv_dgrad; rows are
// input channels (weights broadcast from lanes 0..LANES-1), four input pixels per invocation. The
// loop runs over kernel taps outside and output channels inside, so the stride divisions
// happen once per tap. Grid (ceil(n*h*w / 256), ceil(cin/groups / LANES NB), groups); with
// ROW, (ceil(n*w / 256), ceil(cin/groups / LANES NB), groups * h), one input row per z.
@group(0) @binding(1) var dgy: texture_2d<f32>;
// dwt: the weights packed by conv_pack_w (DGRAD).
@group(0) @binding(2) var dwt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> db: array<f32>;
@group(0) @binding(4) var<storage, read_write> ddx: array<f32>;

fn gather_dgy(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    v.x = select(0.0, texel(dgy, u32(idx.x)), ok.x);
    v.y = select(0.0, texel(dgy, u32(idx.y)), ok.y);
    v.z = select(0.0, texel(dgy, u32(idx.z)), ok.z);
    v.w = select(0.0, texel(dgy, u32(idx.w)), ok.w);
    return v;
}

// t / s where the stride divides t, else -1 (the tap reaches no output pixel).
fn tap(t: vec4<i32>, s: u32) -> vec4<i32> {
    if (s == 1u) { return t; }
    let q = t / vec4<i32>(i32(s));
    return select(vec4<i32>(-1), q, q * i32(s) == t);
}

@compute @workgroup_size(WG)
fn conv_dgrad_sg(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let khw = p.kh * p.kw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let m0 = wid.y * LANES * NB;

    // This invocation's four columns (input pixels): ROW walks one input row (wid.z / groups)
    // of every image, so which kernel rows reach an output row is the same for the whole
    // workgroup; otherwise the columns run over all pixels of all images.
    var g = wid.z;
    var col = vec4<u32>(wid.x * WG * 4u + 4u * lid) + vec4<u32>(0u, 1u, 2u, 3u);
    var nn = p.n * hw;
    var bi: vec4<u32>;
    var rr: vec4<u32>;
    var hp: vec4<u32>;
    if (ROW) {
        g = wid.z % p.groups;
        let hrow = wid.z / p.groups;
        nn = p.n * p.w;
        bi = col / p.w;
        hp = vec4<u32>(hrow);
        rr = col - bi * p.w + hrow * p.w;
    } else {
        bi = col / hw;
        rr = col - bi * hw;
        hp = rr / p.w;
    }
    let cok = col < vec4<u32>(nn);
    let th0 = vec4<i32>(hp) + i32(p.ph);
    let tw0 = vec4<i32>(rr - hp * p.w) + i32(p.pw);
    let gybase = vec4<i32>((bi * p.cout + g * mg) * hwo);
    // The texel of weights (rows: input channels) this lane loads for the subgroup at output
    // channel co, tap (ki, kj): wq + (co khw + ki kw + kj) tstep.
    let wq = packed_texel(g * mg, khw, m0, lane);
    let tstep = p.total / 4u;

    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    var acc3: Acc;
    if (ROW) {
        // Stride 1 along both axes, dilation 1 along w, w % 4 == 0: the four columns are
        // neighbours in one input row, so tap kj + 1 sees three of tap kj's gy values again
        // (shifted right); slide the window by one new load per tap. Only kernel rows
        // ki_lo..ki_hi reach an output row (0 <= th0 - ki dh < ho), for the whole
        // workgroup: MnistCnn's conv2 (12 rows from 8) skips a third of them.
        let t = th0.x;
        let past = t - i32(p.ho) + 1;
        var ki_lo = 0u;
        if (past > 0) { ki_lo = (u32(past) + p.dh - 1u) / p.dh; }
        let ki_end = min(p.kh, u32(t) / p.dh + 1u);
        for (var co = 0u; co < mg; co = co + 1u) {
            let cobase = gybase.x + i32(co * hwo);
            for (var ki = ki_lo; ki < ki_end; ki = ki + 1u) {
                let oh = th0.x - i32(ki * p.dh);
                let hok = cok.x && oh >= 0 && oh < i32(p.ho);
                let rowb = cobase + oh * i32(p.wo);
                var b = gather_dgy(vec4<i32>(rowb) + tw0, vec4<bool>(hok) & inside(tw0, p.wo));
                let wk = wq + (co * khw + ki * p.kw) * tstep;
                for (var kj = 0u; kj < p.kw; kj = kj + 1u) {
                    if (kj > 0u) {
                        let np = tw0.x - i32(kj);
                        var nv = 0.0;
                        let inb = hok && np >= 0 && np < i32(p.wo);
                        nv = select(0.0, texel(dgy, u32(rowb + np)), inb);
                        b = vec4<f32>(nv, b.xyz);
                    }
                    rank1_tile(&acc0, &acc1, &acc2, &acc3, texel4(dwt, wk + kj * tstep), b);
                }
            }
        }
    }
    for (var ki = 0u; ki < p.kh && !ROW; ki = ki + 1u) {
        let oh = tap(th0 - i32(ki * p.dh), p.sh);
        let hok = cok & inside(oh, p.ho);
        for (var kj = 0u; kj < p.kw; kj = kj + 1u) {
            let ow = tap(tw0 - i32(kj * p.dw), p.sw);
            let ok = hok & inside(ow, p.wo);
            let off = gybase + oh * i32(p.wo) + ow;
            let wk = wq + (ki * p.kw + kj) * tstep;
            for (var co = 0u; co < mg; co = co + 1u) {
                let idx = off + i32(co * hwo);
                let b = gather_dgy(idx, ok);
                rank1_tile(&acc0, &acc1, &acc2, &acc3, texel4(dwt, wk + co * khw * tstep), b);
            }
        }
    }

    let xbase = bi * p.cin * hw + rr;
    for (var i = 0u; i < LANES * NB; i = i + 1u) {
        let m = m0 + i;
        if (m >= cg) { break; }
        let c = g * cg + m;
        var bias = 0.0;
        if (p.has_bias != 0u) { bias = db[c]; }
        let v = row_of(acc0, acc1, acc2, acc3, i) + bias;
        let xi = xbase + c * hw;
        if (cok.x) { ddx[xi.x] = v.x; }
        if (cok.y) { ddx[xi.y] = v.y; }
        if (cok.z) { ddx[xi.z] = v.z; }
        if (cok.w) { ddx[xi.w] = v.w; }
    }
}

// --- conv_wgrad_sg(x, gy, part): the weight gradient as in conv.wgsl's conv_wgrad. Rows
// are output channels (packed gy broadcast from the loading lanes), four columns (ci, ki, kj) per
// invocation and only WGW (16 or 8) invocations per workgroup (weights have few columns; the
// parallelism comes from splitting the pixels k, slice s = wid.z % splits). Pixels are walked
// with carried counters instead of divisions.
// Grid (ceil(cin/groups*kh*kw / 64), ceil(cout/groups / LANES NB), groups * splits).
@group(0) @binding(1) var wx: texture_2d<f32>;
@group(0) @binding(2) var wgy: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> wpart: array<f32>;

fn gather_wx(idx: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    v.x = select(0.0, texel(wx, u32(idx.x)), ok.x);
    v.y = select(0.0, texel(wx, u32(idx.y)), ok.y);
    v.z = select(0.0, texel(wx, u32(idx.z)), ok.z);
    v.w = select(0.0, texel(wx, u32(idx.w)), ok.w);
    return v;
}

// Invocations per workgroup: 16, or 8 for weights of at most 32 columns (MnistCnn's conv1:
// 25), where the second half would be whole subgroups with no column to compute.
override WGW: u32 = 16u;

@compute @workgroup_size(WGW)
fn conv_wgrad_sg(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let g = wid.z / p.splits;
    let s = wid.z % p.splits;
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let khw = p.kh * p.kw;
    let ncols = cg * khw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let kbeg = s * p.kchunk;
    let kend = min(p.n * hwo, kbeg + p.kchunk);
    let m0 = wid.y * LANES * NB;

    // This invocation's four columns: fixed offsets into every image of x.
    let col = vec4<u32>(wid.x * WGW * 4u + 4u * lid) + vec4<u32>(0u, 1u, 2u, 3u);
    let cok = col < vec4<u32>(ncols);
    let cc = min(col, vec4<u32>(ncols - 1u));
    let ci = cc / khw;
    let rem = cc - ci * khw;
    let ki = rem / p.kw;
    let offh = vec4<i32>(ki * p.dh) - i32(p.ph);
    let offw = vec4<i32>((rem - ki * p.kw) * p.dw) - i32(p.pw);
    let xc = vec4<i32>((g * cg + ci) * hw);

    // Pixel kbeg as (image, row, column), then carried along.
    var b = kbeg / hwo;
    var oh = (kbeg - b * hwo) / p.wo;
    var ow = kbeg - b * hwo - oh * p.wo;
    // The texel of packed gy (conv_pack_w MODE 2: pixel-major) this lane loads at pixel k;
    // the next pixel's is tstep further, the next image's (groups - 1) hwo tsteps more.
    let tstep = p.total / 4u;
    var gq = packed_texel(b * p.groups + g, hwo, m0, lane) + (oh * p.wo + ow) * tstep;
    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    var acc3: Acc;
    for (var k = kbeg; k < kend; k = k + 1u) {
        let ih = offh + i32(oh * p.sh);
        let iw = offw + i32(ow * p.sw);
        let ok = cok & inside(ih, p.h) & inside(iw, p.w);
        let idx = xc + i32(b * p.cin * hw) + ih * i32(p.w) + iw;
        let bv = gather_wx(idx, ok);
        rank1_tile(&acc0, &acc1, &acc2, &acc3, texel4(wgy, gq), bv);
        gq = gq + tstep;
        ow = ow + 1u;
        if (ow == p.wo) {
            ow = 0u;
            oh = oh + 1u;
            if (oh == p.ho) {
                oh = 0u;
                b = b + 1u;
                gq = gq + (p.groups - 1u) * hwo * tstep;
            }
        }
    }

    // Slice s of the partial sums: one whole weight gradient (cout x ncols) each.
    let base = s * p.cout * ncols;
    for (var i = 0u; i < LANES * NB; i = i + 1u) {
        let m = m0 + i;
        if (m >= mg) { break; }
        let v = row_of(acc0, acc1, acc2, acc3, i);
        let oi = base + (g * mg + m) * ncols + col;
        if (cok.x) { wpart[oi.x] = v.x; }
        if (cok.y) { wpart[oi.y] = v.y; }
        if (cok.z) { wpart[oi.z] = v.z; }
        if (cok.w) { wpart[oi.w] = v.w; }
    }
}

// --- conv_wgrad_sg_row(x, gy, part): conv_wgrad_sg for kernels at most 4 wide with stride
// and dilation 1 along w. An invocation owns one (ci, ki) pair and its kernel columns
// kj = 0..3 (those >= kw are computed and dropped): at pixel (oh, ow) they read the four
// neighbours x[.., ow - pw .. ow - pw + 3] of one row, and the next pixel of the row shifts
// that window by one, so a pixel costs one new load instead of four. The pixels are walked
// row segment by row segment, and each segment starts one column left of its first window,
// so every pixel slides: an `if` choosing between the first window and a slide made the
// kernel 30% slower on lavapipe (ResNet-14), though its condition is the same for all lanes.
// Grid (ceil(cin/groups*kh / 16), ceil(cout/groups / LANES NB), groups * splits).
@compute @workgroup_size(WGW)
fn conv_wgrad_sg_row(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32,
                     @builtin(subgroup_invocation_id) lane: u32) {
    let g = wid.z / p.splits;
    let s = wid.z % p.splits;
    let mg = p.cout / p.groups;
    let cg = p.cin / p.groups;
    let khw = p.kh * p.kw;
    let ncols = cg * khw;
    let hw = p.h * p.w;
    let hwo = p.ho * p.wo;
    let kbeg = s * p.kchunk;
    let kend = min(p.n * hwo, kbeg + p.kchunk);
    let m0 = wid.y * LANES * NB;

    // This invocation's (ci, ki) pair.
    let npairs = cg * p.kh;
    let pair = wid.x * WGW + lid;
    let pok = pair < npairs;
    let pc = min(pair, npairs - 1u);
    let ci = pc / p.kh;
    let ki = pc - ci * p.kh;
    let offh = i32(ki * p.dh) - i32(p.ph);
    let xc = i32((g * cg + ci) * hw);
    let kj4 = vec4<i32>(0, 1, 2, 3);
    // Packed gy (conv_pack_w MODE 2): one texel per pixel holds this lane's four rows.
    let tstep = p.total / 4u;

    var b = kbeg / hwo;
    var oh = (kbeg - b * hwo) / p.wo;
    var ow = kbeg - b * hwo - oh * p.wo;
    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    var acc3: Acc;
    // Row segments: the pixels of one output row within this slice (see above).
    var k = kbeg;
    loop {
        if (k >= kend) { break; }
        let seg = min(kend - k, p.wo - ow);
        let ih = offh + i32(oh * p.sh);
        let rowok = pok && ih >= 0 && ih < i32(p.h);
        let base = xc + i32(b * p.cin * hw) + ih * i32(p.w);
        let iw = vec4<i32>(i32(ow) - i32(p.pw) - 1) + kj4;
        var win = gather_wx(vec4<i32>(base) + iw, vec4<bool>(rowok) & inside(iw, p.w));
        var np = i32(ow) - i32(p.pw) + 3;
        var gq = packed_texel(b * p.groups + g, hwo, m0, lane) + (oh * p.wo + ow) * tstep;
        for (var j = 0u; j < seg; j = j + 1u) {
            var nv = 0.0;
            nv = select(0.0, texel(wx, u32(base + np)), rowok && np >= 0 && np < i32(p.w));
            win = vec4<f32>(win.yzw, nv);
            rank1_tile(&acc0, &acc1, &acc2, &acc3, texel4(wgy, gq), win);
            np = np + 1;
            gq = gq + tstep;
        }
        k = k + seg;
        ow = 0u;
        oh = oh + 1u;
        if (oh == p.ho) {
            oh = 0u;
            b = b + 1u;
        }
    }

    let base = s * p.cout * ncols;
    let col = ci * khw + ki * p.kw;
    let cok = vec4<bool>(pok) & (kj4 < vec4<i32>(i32(p.kw)));
    for (var i = 0u; i < LANES * NB; i = i + 1u) {
        let m = m0 + i;
        if (m >= mg) { break; }
        let v = row_of(acc0, acc1, acc2, acc3, i);
        let oi = base + (g * mg + m) * ncols + col;
        if (cok.x) { wpart[oi] = v.x; }
        if (cok.y) { wpart[oi + 1u] = v.y; }
        if (cok.z) { wpart[oi + 2u] = v.z; }
        if (cok.w) { wpart[oi + 3u] = v.w; }
    }
}

// --- conv_pack_w(src, dst): an operand of the subgroup kernels laid out so that the rows a
// workgroup needs at one step are neighbours and one lane fetches four of them in one
// texel. src is T blocks of [A][B] (A rows of B steps); dst is T blocks of [B][total], row
// a of step b at b * total + a, rows a >= A zero (total pads A to whole workgroup tiles).
//   MODE 0, weights for conv_fwd_sg:     T = groups, A = cout/groups, B = cin/groups kh kw
//   MODE 1, weights for conv_dgrad_sg:   T = cout,   A = cin/groups,  B = kh kw
//   MODE 2, gy for the conv_wgrad_sg*:   T = n groups, A = cout/groups, B = ho wo
override MODE: u32 = 0u;
@group(0) @binding(1) var<storage, read> pw_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> pw_out: array<f32>;

@compute @workgroup_size(256)
fn conv_pack_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let o = linear(wid, nwg, lid);
    let cg = p.cin / p.groups;
    var t = p.groups;
    var a = p.cout / p.groups;
    var b = cg * p.kh * p.kw;
    if (MODE == 1u) {
        t = p.cout;
        a = cg;
        b = p.kh * p.kw;
    } else if (MODE == 2u) {
        t = p.n * p.groups;
        b = p.ho * p.wo;
    }
    let block = b * p.total;
    if (o >= t * block) { return; }
    let tb = udivmod(o, block); // (block, offset in it)
    let ba = udivmod(tb.y, p.total); // (step, row)
    var v = 0.0;
    if (ba.y < a) { v = pw_in[(tb.x * a + ba.y) * b + ba.x]; }
    pw_out[o] = v;
}

// --- conv_pack_gy4(gy, dst): conv_pack_w's MODE 2 where ho wo % 4 == 0, a 4x4 block (4
// rows by 4 pixels) per invocation: four vec4 loads and four vec4 stores where the scalar
// kernel made 16 of each (on lavapipe every per-lane load or store is a loop over the lanes).
@group(0) @binding(1) var<storage, read> pg_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> pg_out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn conv_pack_gy4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = linear(wid, nwg, lid);
    let a = p.cout / p.groups;
    let bq = p.ho * p.wo / 4u; // pixel quads per block
    let rq = p.total / 4u; // row quads per pixel
    if (o >= p.n * p.groups * bq * rq) { return; }
    let tr = udivmod(o, bq * rq); // (block, offset in it)
    let pr = udivmod(tr.y, rq); // (pixel quad, row quad)
    let r0 = 4u * pr.y;
    let src = (tr.x * a + r0) * bq + pr.x;
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    var v2 = vec4<f32>(0.0);
    var v3 = vec4<f32>(0.0);
    if (r0 < a) { v0 = pg_in[src]; }
    if (r0 + 1u < a) { v1 = pg_in[src + bq]; }
    if (r0 + 2u < a) { v2 = pg_in[src + 2u * bq]; }
    if (r0 + 3u < a) { v3 = pg_in[src + 3u * bq]; }
    let dst = (tr.x * bq * 4u + 4u * pr.x) * rq + pr.y;
    pg_out[dst] = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
    pg_out[dst + rq] = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
    pg_out[dst + 2u * rq] = vec4<f32>(v0.z, v1.z, v2.z, v3.z);
    pg_out[dst + 3u * rq] = vec4<f32>(v0.w, v1.w, v2.w, v3.w);
}
