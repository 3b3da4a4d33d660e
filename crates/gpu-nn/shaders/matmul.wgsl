// Batched matrix products: C[b] = op(A[b]) @ op(B[b]) (+ bias[col]), op = optional transpose.
// A is stored [M, K] (or [K, M] when transposed), B [K, N] (or [N, K]), C [M, N]; batch b is
// the z grid and each operand advances by its batch stride (elements) per batch.
// Dispatch: x over column tiles, y over row tiles, z over the batch (or K slices, see `matmul`).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: A transposed, bit 1: B transposed, bit 2: add bias[col]
    flags: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    // Split K: the K length of each slice (a multiple of 16), 0 for none (see `matmul`).
    kchunk: u32,
    // matmul_sum_splits: the number of slices.
    splits: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
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

// --- matmul(a, b, bias, c): the product on devices without the subgroup kernel (GPUs; CPU
// drivers only where an operand does not fit a texture). 64x64 outputs per workgroup of 256 invocations (16x16), each accumulating a
// 4x4 block; K in steps of 16 through workgroup memory, staged along each operand's stored
// contiguous direction so that GPU loads coalesce.
//
// Split K (p.kchunk != 0, one product): z is the slice, summing K range
// [z * kchunk, (z + 1) * kchunk) into c[z * stride_c + ...]; matmul_sum_splits adds the
// slices and the bias. Products with few output tiles and a long K (a fully connected layer
// with one output, say) would otherwise run on a handful of workgroups.
var<workgroup> ta: array<vec4<f32>, 256>;  // [16][64] of op(A), k-major
var<workgroup> tb: array<vec4<f32>, 256>;  // [16][64] of op(B)

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let split = p.kchunk != 0u;
    let ba = select(wid.z * p.stride_a, 0u, split);
    let bb = select(wid.z * p.stride_b, 0u, split);
    let k_begin = select(0u, wid.z * p.kchunk, split);
    let k_end = select(p.k, min(p.k, k_begin + p.kchunk), split);
    let tx = lid % 16u;
    let ty = lid / 16u;
    let a_kfast = (p.flags & 1u) == 0u;
    let b_kfast = (p.flags & 2u) != 0u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // kchunk is a multiple of 16, so a step never crosses into the next slice.
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + 16u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = i * 256u + lid;
            let am = select(e % 64u, e / 16u, a_kfast);
            let ak = select(e / 64u, e % 16u, a_kfast);
            ta[(ak * 64u + am) / 4u][am % 4u] = load_a_sel(ba, row0 + am, k0 + ak);
            let bn = select(e % 64u, e / 16u, b_kfast);
            let bk = select(e / 64u, e % 16u, b_kfast);
            tb[(bk * 64u + bn) / 4u][bn % 4u] = load_b_sel(bb, k0 + bk, col0 + bn);
        }
        workgroupBarrier();
        for (var j = 0u; j < 16u; j = j + 1u) {
            let av = ta[j * 16u + ty];
            let bv = tb[j * 16u + tx];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let base = wid.z * p.stride_c;
    let row = row0 + ty * 4u;
    let col = col0 + tx * 4u;
    store_row(base, row, col, acc0);
    store_row(base, row + 1u, col, acc1);
    store_row(base, row + 2u, col, acc2);
    store_row(base, row + 3u, col, acc3);
}

// --- matmul_sum_splits(a = slices, b unused, bias, c): c[i] = sum over the p.splits slices
// of a[s * m * n + i], plus the bias of i's column.
@compute @workgroup_size(256)
fn matmul_sum_splits(@builtin(global_invocation_id) gid: vec3<u32>) {
    let len = p.m * p.n;
    let i = gid.x;
    if (i >= len) { return; }
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        acc = acc + a[s * len + i];
    }
    c[i] = acc + bias_at(i % p.n);
}
