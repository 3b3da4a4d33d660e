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

// --- matmul(a, b, bias, c): 64x64 output tile per workgroup, K in steps of 16 through
// workgroup memory; each of the 256 invocations accumulates a 4x4 block in registers.
const TILE: u32 = 64u;
const BK: u32 = 16u;

// [BK][TILE/4] vec4s: op(A) tile stored k-major so a row block is one vec4 read.
var<workgroup> sa: array<vec4<f32>, 256>;
var<workgroup> sb: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let ba = wid.z * p.stride_a;
    let bb = wid.z * p.stride_b;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Loader coordinates: each invocation fills one vec4 of each tile.
    let lk = lid / 16u;
    let lq = (lid % 16u) * 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        let kk = k0 + lk;
        sa[lid] = vec4<f32>(load_a(ba, row0 + lq, kk), load_a(ba, row0 + lq + 1u, kk),
                            load_a(ba, row0 + lq + 2u, kk), load_a(ba, row0 + lq + 3u, kk));
        sb[lid] = vec4<f32>(load_b(bb, kk, col0 + lq), load_b(bb, kk, col0 + lq + 1u),
                            load_b(bb, kk, col0 + lq + 2u), load_b(bb, kk, col0 + lq + 3u));
        workgroupBarrier();
        for (var j = 0u; j < BK; j = j + 1u) {
            let av = sa[j * 16u + ty];
            let bv = sb[j * 16u + tx];
            acc0 = acc0 + av.x * bv;
            acc1 = acc1 + av.y * bv;
            acc2 = acc2 + av.z * bv;
            acc3 = acc3 + av.w * bv;
        }
        workgroupBarrier();
    }
    let base = wid.z * p.stride_c;
    let col = col0 + tx * 4u;
    let row = row0 + ty * 4u;
    store_row(base, row, col, acc0);
    store_row(base, row + 1u, col, acc1);
    store_row(base, row + 2u, col, acc2);
    store_row(base, row + 3u, col, acc3);
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
