// Batched matrix product for CPU-like adapters with subgroups of 4+ lanes; same results as
// matmul.wgsl, which holds the portable kernels (a module using subgroup operations does not
// validate on devices without the feature).
//
// On lavapipe a storage-buffer load whose address differs per invocation runs as a loop over
// the SIMD lanes, so a kernel costs what it loads. Here a workgroup owns 4 LANES output
// "rows" and 64 invocations x 4 "columns"; lanes 0..LANES-1 of each subgroup load one value
// per LANES-row block and `subgroupBroadcast` hands it to every lane, so each k costs 4 + 4
// loads for 16 LANES multiply-adds, with no workgroup memory and no barriers.
//
// Both operands are read from rgba32float textures on lavapipe (`Gpu::dispatch_texels`
// copies them from their buffers), which fetches texels with branch-free gathers where a
// storage-buffer load with a per-lane address is a loop over the lanes; 1024^3 ran 2.5x
// faster this way (5.3 -> 13 GFLOP/s). Other drivers read the buffers (see common.wgsl).
//
// Rows and columns are abstract: every operand is addressed through strides, so A or B
// transposed, and the product computed as C^T = B^T A^T (the larger dimension on the lanes),
// are all the same kernel.
//   R[i, k] = r[zb * r_batch + i * r_i + k * r_k]         i < rows
//   L[k, j] = l[zb * l_batch + k * l_k + j * l_j]         j < cols
//   out[i, j] = sum_k R[i, k] L[k, j] (+ bias[i] or bias[j]) at
//   c[zb * c_batch + i * c_i + j * c_j]
// Dispatch: x over column blocks of 256, y over row blocks of 32, z over the batch.

struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    // 0: no bias, 1: bias[j], 2: bias[i]
    bias_mode: u32,
    r_i: u32,
    r_k: u32,
    l_k: u32,
    l_j: u32,
    c_i: u32,
    c_j: u32,
    r_batch: u32,
    l_batch: u32,
    c_batch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var r: texture_2d<f32>;
@group(0) @binding(2) var l: texture_2d<f32>;
// Bound to any buffer when bias_mode is 0 (never read then).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const WG: u32 = 64u;
// Rows per block, one per lane that loads them: 8, or 4 where subgroups have 4 lanes
// (SwiftShader). Set per device by `Gpu`.
override LANES: u32 = 8u;
// Set when every lane's four columns are one aligned texel of L: l_j == 1 and cols, l_k and
// l_batch multiples of 4.
override L_VEC: bool = false;
struct Acc {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
}

// acc.ri += a(lane i) * b.
fn rank1(acc: ptr<function, Acc>, a: f32, b: vec4<f32>) {
    (*acc).r0 = fma(vec4<f32>(subgroupBroadcast(a, 0u)), b, (*acc).r0);
    (*acc).r1 = fma(vec4<f32>(subgroupBroadcast(a, 1u)), b, (*acc).r1);
    (*acc).r2 = fma(vec4<f32>(subgroupBroadcast(a, 2u)), b, (*acc).r2);
    (*acc).r3 = fma(vec4<f32>(subgroupBroadcast(a, 3u)), b, (*acc).r3);
    if (LANES > 4u) {
        (*acc).r4 = fma(vec4<f32>(subgroupBroadcast(a, 4u)), b, (*acc).r4);
        (*acc).r5 = fma(vec4<f32>(subgroupBroadcast(a, 5u)), b, (*acc).r5);
        (*acc).r6 = fma(vec4<f32>(subgroupBroadcast(a, 6u)), b, (*acc).r6);
        (*acc).r7 = fma(vec4<f32>(subgroupBroadcast(a, 7u)), b, (*acc).r7);
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

fn row_of(a0: Acc, a1: Acc, a2: Acc, a3: Acc, i: u32) -> vec4<f32> {
    switch i / LANES {
        case 0u: { return acc_row(a0, i % LANES); }
        case 1u: { return acc_row(a1, i % LANES); }
        case 2u: { return acc_row(a2, i % LANES); }
        default: { return acc_row(a3, i % LANES); }
    }
}

// Masked loads: lanes past the matrix read 0 (selects, not branches).
fn load_r(i: u32, ok: bool) -> f32 {
    return select(0.0, texel(r, i), ok);
}

fn load_l(idx: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    if (L_VEC) {
        return select(vec4<f32>(0.0), texel4(l, idx.x / 4u), ok);
    }
    return select(vec4<f32>(0.0), vec4<f32>(
        texel(l, idx.x),
        texel(l, idx.y),
        texel(l, idx.z),
        texel(l, idx.w),
    ), ok);
}

@compute @workgroup_size(WG)
fn matmul_sg(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(subgroup_invocation_id) lane: u32) {
    let i0 = wid.y * 4u * LANES;
    let col = vec4<u32>(wid.x * WG * 4u + 4u * lid) + vec4<u32>(0u, 1u, 2u, 3u);
    let cok = col < vec4<u32>(p.cols);
    let lbase = wid.z * p.l_batch + col * p.l_j;
    // The rows this lane loads for its subgroup, one per LANES-row block.
    let row = vec4<u32>(i0 + lane % LANES) + vec4<u32>(0u, 1u, 2u, 3u) * LANES;
    let rok = row < vec4<u32>(p.rows);
    let rbase = wid.z * p.r_batch + row * p.r_i;

    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    var acc3: Acc;
    for (var k = 0u; k < p.k; k = k + 1u) {
        let b = load_l(lbase + k * p.l_k, cok);
        let rk = rbase + k * p.r_k;
        rank1(&acc0, load_r(rk.x, rok.x), b);
        rank1(&acc1, load_r(rk.y, rok.y), b);
        rank1(&acc2, load_r(rk.z, rok.z), b);
        rank1(&acc3, load_r(rk.w, rok.w), b);
    }

    var bj = vec4<f32>(0.0);
    if (p.bias_mode == 1u) {
        bj = load_l_bias(col, cok);
    }
    let cbase = wid.z * p.c_batch + col * p.c_j;
    for (var i = 0u; i < 4u * LANES; i = i + 1u) {
        let ri = i0 + i;
        if (ri >= p.rows) { break; }
        var v = row_of(acc0, acc1, acc2, acc3, i) + bj;
        if (p.bias_mode == 2u) { v = v + bias[ri]; }
        let ci = cbase + ri * p.c_i;
        if (cok.x) { c[ci.x] = v.x; }
        if (cok.y) { c[ci.y] = v.y; }
        if (cok.z) { c[ci.z] = v.z; }
        if (cok.w) { c[ci.w] = v.w; }
    }
}

fn load_l_bias(col: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (ok.x) { v.x = bias[col.x]; }
    if (ok.y) { v.y = bias[col.y]; }
    if (ok.z) { v.z = bias[col.z]; }
    if (ok.w) { v.w = bias[col.w]; }
    return v;
}
