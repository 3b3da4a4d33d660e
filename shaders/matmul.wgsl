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
