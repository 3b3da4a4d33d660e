// Batched matrix products: C[b] = op(A[b]) @ op(B[b]) (+ bias[col]), op = optional transpose.
// A is stored [M, K] (or [K, M] when transposed), B [K, N] (or [N, K]), C [M, N]; batch b is
// the z grid and each operand advances by its batch stride (elements) per batch.
// Dispatch: x over column tiles, y over row tiles, z over the batch.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: A transposed, bit 1: B transposed, bit 2: add bias[col]
    flags: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bound to any buffer when the bias flag is off (never read then).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// op(A)[row, kk] of the batch starting at `base`, 0 outside the matrix.
fn load_a(base: u32, row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) { return 0.0; }
    let idx = select(row * p.k + kk, kk * p.m + row, (p.flags & 1u) != 0u);
    return a[base + idx];
}

// op(B)[kk, col] of the batch starting at `base`, 0 outside the matrix.
fn load_b(base: u32, kk: u32, col: u32) -> f32 {
    if (kk >= p.k || col >= p.n) { return 0.0; }
    let idx = select(kk * p.n + col, col * p.k + kk, (p.flags & 2u) != 0u);
    return b[base + idx];
}

fn bias_at(col: u32) -> f32 {
    if ((p.flags & 4u) != 0u) { return bias[col]; }
    return 0.0;
}

// --- matmul_naive(a, b, bias, c): one output per invocation, the benchmark's reference.
@compute @workgroup_size(16, 16)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    if (row >= p.m || col >= p.n) { return; }
    let ba = gid.z * p.stride_a;
    let bb = gid.z * p.stride_b;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        acc = acc + load_a(ba, row, kk) * load_b(bb, kk, col);
    }
    c[gid.z * p.stride_c + row * p.n + col] = acc + bias_at(col);
}

// Writes up to 4 consecutive outputs of one row, adding the bias, skipping the edge.
fn store_row(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < p.n) {
            c[base + row * p.n + col + j] = v[j] + bias_at(col + j);
        }
    }
}

// op(A)[row, kk] with the address clamped into the matrix and 0 outside: a select, not a
// branch, so every lane runs the same code.
fn load_a_sel(base: u32, row: u32, kk: u32) -> f32 {
    let r = min(row, p.m - 1u);
    let q = min(kk, p.k - 1u);
    let idx = select(r * p.k + q, q * p.m + r, (p.flags & 1u) != 0u);
    return select(0.0, a[base + idx], row < p.m && kk < p.k);
}

fn load_b_sel(base: u32, kk: u32, col: u32) -> f32 {
    let q = min(kk, p.k - 1u);
    let cc = min(col, p.n - 1u);
    let idx = select(q * p.n + cc, cc * p.k + q, (p.flags & 2u) != 0u);
    return select(0.0, b[base + idx], kk < p.k && col < p.n);
}

// --- matmul(a, b, bias, c): 64x64 output tile per workgroup of 64 invocations, each
// accumulating an 8x8 block in registers; K in steps of 16 through workgroup memory.
// Large blocks matter most on CPU drivers (lavapipe), where memory reads are costly next to
// FMAs: an 8x8 block does 64 FMAs per 16 values read (on lavapipe ~1.35x the speed of a
// 256-invocation 4x4 version at 1024^3).
var<workgroup> ta: array<vec4<f32>, 256>;  // [16][64] of op(A), k-major
var<workgroup> tb: array<vec4<f32>, 256>;  // [16][64] of op(B)

@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let ba = wid.z * p.stride_a;
    let bb = wid.z * p.stride_b;
    let tx = lid % 8u;
    let ty = lid / 8u;
    let a_kfast = (p.flags & 1u) == 0u;
    let b_kfast = (p.flags & 2u) != 0u;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) { acc[i] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.k; k0 = k0 + 16u) {
        // Stage 64x16 of each operand: 16 values per invocation, walking the stored layout's
        // contiguous direction across invocations so that GPU loads coalesce.
        for (var i = 0u; i < 16u; i = i + 1u) {
            let e = i * 64u + lid;
            let am = select(e % 64u, e / 16u, a_kfast);
            let ak = select(e / 64u, e % 16u, a_kfast);
            ta[(ak * 64u + am) / 4u][am % 4u] = load_a_sel(ba, row0 + am, k0 + ak);
            let bn = select(e % 64u, e / 16u, b_kfast);
            let bk = select(e / 64u, e % 16u, b_kfast);
            tb[(bk * 64u + bn) / 4u][bn % 4u] = load_b_sel(bb, k0 + bk, col0 + bn);
        }
        workgroupBarrier();
        for (var j = 0u; j < 16u; j = j + 1u) {
            let a0 = ta[j * 16u + ty * 2u];
            let a1 = ta[j * 16u + ty * 2u + 1u];
            let b0 = tb[j * 16u + tx * 2u];
            let b1 = tb[j * 16u + tx * 2u + 1u];
            acc[0] += a0.x * b0; acc[1] += a0.x * b1;
            acc[2] += a0.y * b0; acc[3] += a0.y * b1;
            acc[4] += a0.z * b0; acc[5] += a0.z * b1;
            acc[6] += a0.w * b0; acc[7] += a0.w * b1;
            acc[8] += a1.x * b0; acc[9] += a1.x * b1;
            acc[10] += a1.y * b0; acc[11] += a1.y * b1;
            acc[12] += a1.z * b0; acc[13] += a1.z * b1;
            acc[14] += a1.w * b0; acc[15] += a1.w * b1;
        }
        workgroupBarrier();
    }
    let base = wid.z * p.stride_c;
    let col = col0 + tx * 8u;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = row0 + ty * 8u + i;
        store_row(base, row, col, acc[i * 2u]);
        store_row(base, row, col + 4u, acc[i * 2u + 1u]);
    }
}

// --- matmul_v4_{nn,tn,nt,tt}(a, b, bias, c): no workgroup memory, every operand read as
// vec4 straight from storage. Needs K, N (and M when A is transposed) multiples of 4; the
// launcher picks the entry for the transposes (no branches in the inner loop) and falls
// back to `matmul` otherwise. Lavapipe (Mesa 22.3) runs each storage or workgroup load as a
// loop over the 8 SIMD lanes, one scalar load per component, and the register transposes
// below cost nothing there (a vec4 is 4 separate AVX registers), so reading storage directly
// needs far fewer lane loops than staging through workgroup memory (no staging loads, stores
// or barriers). Each invocation owns an 8x8 block: per 4 k, 8+8 vec4 loads feed 256 FMAs.
// A workgroup of 64 invocations covers 64x64 outputs so that neighbours share cached rows.
// Measured on lavapipe at 1024^3: ~1.8x the staged `matmul`; 12x12 blocks (96x96 tiles) were
// 2x slower and 16x16 blocks took minutes to compile.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn matmul_v4_nn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u + (lid / 8u) * 8u;
    let col0 = wid.x * 64u + (lid % 8u) * 8u;
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    var oa: array<u32, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) { oa[i] = wid.z * (p.stride_a / 4u) + min(row0 + i, p.m - 1u) * k4; }
    var ob: array<u32, 2>;
    for (var u = 0u; u < 2u; u = u + 1u) { ob[u] = wid.z * (p.stride_b / 4u) + min(col0 / 4u + u, n4 - 1u); }
    var acc: array<vec4<f32>, 16>;
    for (var kb = 0u; kb < k4; kb = kb + 1u) {
        let ra0 = a4[oa[0] + kb];
        let ra1 = a4[oa[1] + kb];
        let ra2 = a4[oa[2] + kb];
        let ra3 = a4[oa[3] + kb];
        let ra4 = a4[oa[4] + kb];
        let ra5 = a4[oa[5] + kb];
        let ra6 = a4[oa[6] + kb];
        let ra7 = a4[oa[7] + kb];
        let bv0_0 = b4[ob[0] + (kb * 4u + 0u) * n4];
        let bv0_1 = b4[ob[1] + (kb * 4u + 0u) * n4];
        let bv1_0 = b4[ob[0] + (kb * 4u + 1u) * n4];
        let bv1_1 = b4[ob[1] + (kb * 4u + 1u) * n4];
        let bv2_0 = b4[ob[0] + (kb * 4u + 2u) * n4];
        let bv2_1 = b4[ob[1] + (kb * 4u + 2u) * n4];
        let bv3_0 = b4[ob[0] + (kb * 4u + 3u) * n4];
        let bv3_1 = b4[ob[1] + (kb * 4u + 3u) * n4];
        acc[0] = fma(vec4<f32>(ra0.x), bv0_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.x), bv0_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.x), bv0_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.x), bv0_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.x), bv0_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.x), bv0_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.x), bv0_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.x), bv0_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.x), bv0_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.x), bv0_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.x), bv0_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.x), bv0_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.x), bv0_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.x), bv0_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.x), bv0_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.x), bv0_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra0.y), bv1_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.y), bv1_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.y), bv1_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.y), bv1_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.y), bv1_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.y), bv1_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.y), bv1_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.y), bv1_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.y), bv1_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.y), bv1_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.y), bv1_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.y), bv1_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.y), bv1_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.y), bv1_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.y), bv1_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.y), bv1_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra0.z), bv2_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.z), bv2_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.z), bv2_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.z), bv2_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.z), bv2_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.z), bv2_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.z), bv2_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.z), bv2_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.z), bv2_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.z), bv2_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.z), bv2_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.z), bv2_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.z), bv2_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.z), bv2_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.z), bv2_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.z), bv2_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra0.w), bv3_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.w), bv3_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.w), bv3_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.w), bv3_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.w), bv3_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.w), bv3_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.w), bv3_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.w), bv3_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.w), bv3_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.w), bv3_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.w), bv3_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.w), bv3_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.w), bv3_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.w), bv3_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.w), bv3_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.w), bv3_1, acc[15]);
    }
    let cb = wid.z * (p.stride_c / 4u);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = row0 + i;
        for (var u = 0u; u < 2u; u = u + 1u) {
            let cq = col0 / 4u + u;
            if (row < p.m && cq < n4) {
                var v = acc[i * 2u + u];
                if ((p.flags & 4u) != 0u) {
                    v += vec4<f32>(bias[cq * 4u], bias[cq * 4u + 1u], bias[cq * 4u + 2u], bias[cq * 4u + 3u]);
                }
                c4[cb + row * n4 + cq] = v;
            }
        }
    }
}

@compute @workgroup_size(64)
fn matmul_v4_nt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u + (lid / 8u) * 8u;
    let col0 = wid.x * 64u + (lid % 8u) * 8u;
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    var oa: array<u32, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) { oa[i] = wid.z * (p.stride_a / 4u) + min(row0 + i, p.m - 1u) * k4; }
    var ob: array<u32, 8>;
    for (var j = 0u; j < 8u; j = j + 1u) { ob[j] = wid.z * (p.stride_b / 4u) + min(col0 + j, p.n - 1u) * k4; }
    var acc: array<vec4<f32>, 16>;
    for (var kb = 0u; kb < k4; kb = kb + 1u) {
        let ra0 = a4[oa[0] + kb];
        let ra1 = a4[oa[1] + kb];
        let ra2 = a4[oa[2] + kb];
        let ra3 = a4[oa[3] + kb];
        let ra4 = a4[oa[4] + kb];
        let ra5 = a4[oa[5] + kb];
        let ra6 = a4[oa[6] + kb];
        let ra7 = a4[oa[7] + kb];
        let rb0 = b4[ob[0] + kb];
        let rb1 = b4[ob[1] + kb];
        let rb2 = b4[ob[2] + kb];
        let rb3 = b4[ob[3] + kb];
        let rb4 = b4[ob[4] + kb];
        let rb5 = b4[ob[5] + kb];
        let rb6 = b4[ob[6] + kb];
        let rb7 = b4[ob[7] + kb];
        let bv0_0 = vec4<f32>(rb0.x, rb1.x, rb2.x, rb3.x);
        let bv0_1 = vec4<f32>(rb4.x, rb5.x, rb6.x, rb7.x);
        let bv1_0 = vec4<f32>(rb0.y, rb1.y, rb2.y, rb3.y);
        let bv1_1 = vec4<f32>(rb4.y, rb5.y, rb6.y, rb7.y);
        let bv2_0 = vec4<f32>(rb0.z, rb1.z, rb2.z, rb3.z);
        let bv2_1 = vec4<f32>(rb4.z, rb5.z, rb6.z, rb7.z);
        let bv3_0 = vec4<f32>(rb0.w, rb1.w, rb2.w, rb3.w);
        let bv3_1 = vec4<f32>(rb4.w, rb5.w, rb6.w, rb7.w);
        acc[0] = fma(vec4<f32>(ra0.x), bv0_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.x), bv0_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.x), bv0_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.x), bv0_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.x), bv0_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.x), bv0_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.x), bv0_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.x), bv0_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.x), bv0_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.x), bv0_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.x), bv0_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.x), bv0_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.x), bv0_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.x), bv0_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.x), bv0_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.x), bv0_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra0.y), bv1_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.y), bv1_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.y), bv1_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.y), bv1_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.y), bv1_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.y), bv1_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.y), bv1_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.y), bv1_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.y), bv1_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.y), bv1_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.y), bv1_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.y), bv1_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.y), bv1_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.y), bv1_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.y), bv1_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.y), bv1_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra0.z), bv2_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.z), bv2_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.z), bv2_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.z), bv2_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.z), bv2_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.z), bv2_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.z), bv2_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.z), bv2_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.z), bv2_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.z), bv2_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.z), bv2_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.z), bv2_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.z), bv2_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.z), bv2_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.z), bv2_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.z), bv2_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra0.w), bv3_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0.w), bv3_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1.w), bv3_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1.w), bv3_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2.w), bv3_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2.w), bv3_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3.w), bv3_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3.w), bv3_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra4.w), bv3_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra4.w), bv3_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra5.w), bv3_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra5.w), bv3_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra6.w), bv3_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra6.w), bv3_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra7.w), bv3_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra7.w), bv3_1, acc[15]);
    }
    let cb = wid.z * (p.stride_c / 4u);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = row0 + i;
        for (var u = 0u; u < 2u; u = u + 1u) {
            let cq = col0 / 4u + u;
            if (row < p.m && cq < n4) {
                var v = acc[i * 2u + u];
                if ((p.flags & 4u) != 0u) {
                    v += vec4<f32>(bias[cq * 4u], bias[cq * 4u + 1u], bias[cq * 4u + 2u], bias[cq * 4u + 3u]);
                }
                c4[cb + row * n4 + cq] = v;
            }
        }
    }
}

@compute @workgroup_size(64)
fn matmul_v4_tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u + (lid / 8u) * 8u;
    let col0 = wid.x * 64u + (lid % 8u) * 8u;
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    let m4 = p.m / 4u;
    var oa: array<u32, 2>;
    for (var v = 0u; v < 2u; v = v + 1u) { oa[v] = wid.z * (p.stride_a / 4u) + min(row0 / 4u + v, m4 - 1u); }
    var ob: array<u32, 2>;
    for (var u = 0u; u < 2u; u = u + 1u) { ob[u] = wid.z * (p.stride_b / 4u) + min(col0 / 4u + u, n4 - 1u); }
    var acc: array<vec4<f32>, 16>;
    for (var kb = 0u; kb < k4; kb = kb + 1u) {
        let ra0_0 = a4[oa[0] + (kb * 4u + 0u) * m4];
        let ra0_1 = a4[oa[1] + (kb * 4u + 0u) * m4];
        let ra1_0 = a4[oa[0] + (kb * 4u + 1u) * m4];
        let ra1_1 = a4[oa[1] + (kb * 4u + 1u) * m4];
        let ra2_0 = a4[oa[0] + (kb * 4u + 2u) * m4];
        let ra2_1 = a4[oa[1] + (kb * 4u + 2u) * m4];
        let ra3_0 = a4[oa[0] + (kb * 4u + 3u) * m4];
        let ra3_1 = a4[oa[1] + (kb * 4u + 3u) * m4];
        let bv0_0 = b4[ob[0] + (kb * 4u + 0u) * n4];
        let bv0_1 = b4[ob[1] + (kb * 4u + 0u) * n4];
        let bv1_0 = b4[ob[0] + (kb * 4u + 1u) * n4];
        let bv1_1 = b4[ob[1] + (kb * 4u + 1u) * n4];
        let bv2_0 = b4[ob[0] + (kb * 4u + 2u) * n4];
        let bv2_1 = b4[ob[1] + (kb * 4u + 2u) * n4];
        let bv3_0 = b4[ob[0] + (kb * 4u + 3u) * n4];
        let bv3_1 = b4[ob[1] + (kb * 4u + 3u) * n4];
        acc[0] = fma(vec4<f32>(ra0_0.x), bv0_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0_0.x), bv0_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra0_0.y), bv0_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra0_0.y), bv0_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra0_0.z), bv0_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra0_0.z), bv0_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra0_0.w), bv0_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra0_0.w), bv0_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra0_1.x), bv0_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra0_1.x), bv0_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra0_1.y), bv0_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra0_1.y), bv0_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra0_1.z), bv0_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra0_1.z), bv0_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra0_1.w), bv0_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra0_1.w), bv0_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra1_0.x), bv1_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra1_0.x), bv1_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1_0.y), bv1_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1_0.y), bv1_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra1_0.z), bv1_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra1_0.z), bv1_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra1_0.w), bv1_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra1_0.w), bv1_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra1_1.x), bv1_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra1_1.x), bv1_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra1_1.y), bv1_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra1_1.y), bv1_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra1_1.z), bv1_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra1_1.z), bv1_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra1_1.w), bv1_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra1_1.w), bv1_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra2_0.x), bv2_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra2_0.x), bv2_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra2_0.y), bv2_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra2_0.y), bv2_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2_0.z), bv2_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2_0.z), bv2_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra2_0.w), bv2_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra2_0.w), bv2_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra2_1.x), bv2_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra2_1.x), bv2_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra2_1.y), bv2_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra2_1.y), bv2_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra2_1.z), bv2_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra2_1.z), bv2_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra2_1.w), bv2_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra2_1.w), bv2_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra3_0.x), bv3_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra3_0.x), bv3_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra3_0.y), bv3_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra3_0.y), bv3_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra3_0.z), bv3_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra3_0.z), bv3_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3_0.w), bv3_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3_0.w), bv3_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra3_1.x), bv3_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra3_1.x), bv3_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra3_1.y), bv3_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra3_1.y), bv3_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra3_1.z), bv3_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra3_1.z), bv3_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra3_1.w), bv3_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra3_1.w), bv3_1, acc[15]);
    }
    let cb = wid.z * (p.stride_c / 4u);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = row0 + i;
        for (var u = 0u; u < 2u; u = u + 1u) {
            let cq = col0 / 4u + u;
            if (row < p.m && cq < n4) {
                var v = acc[i * 2u + u];
                if ((p.flags & 4u) != 0u) {
                    v += vec4<f32>(bias[cq * 4u], bias[cq * 4u + 1u], bias[cq * 4u + 2u], bias[cq * 4u + 3u]);
                }
                c4[cb + row * n4 + cq] = v;
            }
        }
    }
}

@compute @workgroup_size(64)
fn matmul_v4_tt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u + (lid / 8u) * 8u;
    let col0 = wid.x * 64u + (lid % 8u) * 8u;
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    let m4 = p.m / 4u;
    var oa: array<u32, 2>;
    for (var v = 0u; v < 2u; v = v + 1u) { oa[v] = wid.z * (p.stride_a / 4u) + min(row0 / 4u + v, m4 - 1u); }
    var ob: array<u32, 8>;
    for (var j = 0u; j < 8u; j = j + 1u) { ob[j] = wid.z * (p.stride_b / 4u) + min(col0 + j, p.n - 1u) * k4; }
    var acc: array<vec4<f32>, 16>;
    for (var kb = 0u; kb < k4; kb = kb + 1u) {
        let ra0_0 = a4[oa[0] + (kb * 4u + 0u) * m4];
        let ra0_1 = a4[oa[1] + (kb * 4u + 0u) * m4];
        let ra1_0 = a4[oa[0] + (kb * 4u + 1u) * m4];
        let ra1_1 = a4[oa[1] + (kb * 4u + 1u) * m4];
        let ra2_0 = a4[oa[0] + (kb * 4u + 2u) * m4];
        let ra2_1 = a4[oa[1] + (kb * 4u + 2u) * m4];
        let ra3_0 = a4[oa[0] + (kb * 4u + 3u) * m4];
        let ra3_1 = a4[oa[1] + (kb * 4u + 3u) * m4];
        let rb0 = b4[ob[0] + kb];
        let rb1 = b4[ob[1] + kb];
        let rb2 = b4[ob[2] + kb];
        let rb3 = b4[ob[3] + kb];
        let rb4 = b4[ob[4] + kb];
        let rb5 = b4[ob[5] + kb];
        let rb6 = b4[ob[6] + kb];
        let rb7 = b4[ob[7] + kb];
        let bv0_0 = vec4<f32>(rb0.x, rb1.x, rb2.x, rb3.x);
        let bv0_1 = vec4<f32>(rb4.x, rb5.x, rb6.x, rb7.x);
        let bv1_0 = vec4<f32>(rb0.y, rb1.y, rb2.y, rb3.y);
        let bv1_1 = vec4<f32>(rb4.y, rb5.y, rb6.y, rb7.y);
        let bv2_0 = vec4<f32>(rb0.z, rb1.z, rb2.z, rb3.z);
        let bv2_1 = vec4<f32>(rb4.z, rb5.z, rb6.z, rb7.z);
        let bv3_0 = vec4<f32>(rb0.w, rb1.w, rb2.w, rb3.w);
        let bv3_1 = vec4<f32>(rb4.w, rb5.w, rb6.w, rb7.w);
        acc[0] = fma(vec4<f32>(ra0_0.x), bv0_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra0_0.x), bv0_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra0_0.y), bv0_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra0_0.y), bv0_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra0_0.z), bv0_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra0_0.z), bv0_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra0_0.w), bv0_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra0_0.w), bv0_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra0_1.x), bv0_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra0_1.x), bv0_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra0_1.y), bv0_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra0_1.y), bv0_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra0_1.z), bv0_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra0_1.z), bv0_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra0_1.w), bv0_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra0_1.w), bv0_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra1_0.x), bv1_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra1_0.x), bv1_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra1_0.y), bv1_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra1_0.y), bv1_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra1_0.z), bv1_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra1_0.z), bv1_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra1_0.w), bv1_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra1_0.w), bv1_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra1_1.x), bv1_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra1_1.x), bv1_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra1_1.y), bv1_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra1_1.y), bv1_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra1_1.z), bv1_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra1_1.z), bv1_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra1_1.w), bv1_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra1_1.w), bv1_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra2_0.x), bv2_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra2_0.x), bv2_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra2_0.y), bv2_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra2_0.y), bv2_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra2_0.z), bv2_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra2_0.z), bv2_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra2_0.w), bv2_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra2_0.w), bv2_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra2_1.x), bv2_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra2_1.x), bv2_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra2_1.y), bv2_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra2_1.y), bv2_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra2_1.z), bv2_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra2_1.z), bv2_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra2_1.w), bv2_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra2_1.w), bv2_1, acc[15]);
        acc[0] = fma(vec4<f32>(ra3_0.x), bv3_0, acc[0]);
        acc[1] = fma(vec4<f32>(ra3_0.x), bv3_1, acc[1]);
        acc[2] = fma(vec4<f32>(ra3_0.y), bv3_0, acc[2]);
        acc[3] = fma(vec4<f32>(ra3_0.y), bv3_1, acc[3]);
        acc[4] = fma(vec4<f32>(ra3_0.z), bv3_0, acc[4]);
        acc[5] = fma(vec4<f32>(ra3_0.z), bv3_1, acc[5]);
        acc[6] = fma(vec4<f32>(ra3_0.w), bv3_0, acc[6]);
        acc[7] = fma(vec4<f32>(ra3_0.w), bv3_1, acc[7]);
        acc[8] = fma(vec4<f32>(ra3_1.x), bv3_0, acc[8]);
        acc[9] = fma(vec4<f32>(ra3_1.x), bv3_1, acc[9]);
        acc[10] = fma(vec4<f32>(ra3_1.y), bv3_0, acc[10]);
        acc[11] = fma(vec4<f32>(ra3_1.y), bv3_1, acc[11]);
        acc[12] = fma(vec4<f32>(ra3_1.z), bv3_0, acc[12]);
        acc[13] = fma(vec4<f32>(ra3_1.z), bv3_1, acc[13]);
        acc[14] = fma(vec4<f32>(ra3_1.w), bv3_0, acc[14]);
        acc[15] = fma(vec4<f32>(ra3_1.w), bv3_1, acc[15]);
    }
    let cb = wid.z * (p.stride_c / 4u);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = row0 + i;
        for (var u = 0u; u < 2u; u = u + 1u) {
            let cq = col0 / 4u + u;
            if (row < p.m && cq < n4) {
                var v = acc[i * 2u + u];
                if ((p.flags & 4u) != 0u) {
                    v += vec4<f32>(bias[cq * 4u], bias[cq * 4u + 1u], bias[cq * 4u + 2u], bias[cq * 4u + 3u]);
                }
                c4[cb + row * n4 + cq] = v;
            }
        }
    }
}

