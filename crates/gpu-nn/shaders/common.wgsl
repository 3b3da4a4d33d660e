// Helpers shared by every kernel file: gpu-nn prepends this file to each of them (the
// `kernels!` macro), and the naga test validates each file with it. No entry points, no
// bindings.

// Invocation index of a 1-D dispatch with 256 invocations per workgroup. The launcher
// spills more workgroups than a dimension allows into y (see Gpu::dispatch).
fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

// floor(a / b) for 1 <= b < 2^22 without an integer division: lavapipe has no vector
// integer division and runs it lane by lane, which made kernels several times slower.
// An f32 estimate (off by at most a few units), one f32 step on the exact remainder, and a
// final +-1 check keep it exact.
fn udiv(a: u32, b: u32) -> u32 {
    let fb = f32(b);
    let q0 = u32(f32(a) / fb);
    let r = i32(a - q0 * b);
    var q = u32(i32(q0) + i32(floor(f32(r) / fb)));
    if (q * b > a) { q = q - 1u; }
    if ((q + 1u) * b <= a) { q = q + 1u; }
    return q;
}

// (a / b, a % b) via udiv.
fn udivmod(a: u32, b: u32) -> vec2<u32> {
    let q = udiv(a, b);
    return vec2<u32>(q, a - q * b);
}

// Bit test, not `v != v`: compilers may fold self-comparisons away.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// 0 <= a < lim, per component.
fn inside(a: vec4<i32>, lim: u32) -> vec4<bool> {
    return (a >= vec4<i32>(0)) & (a < vec4<i32>(i32(lim)));
}

// Texel operands. A kernel declares a read-only operand `var NAME: texture_2d<f32>` and reads
// it only through `texel` and `texel4` below. In this, the texture variant (lavapipe, which
// gathers texels where it loops over the lanes for a storage load with per-lane addresses),
// `Gpu::dispatch_texels` copies the operand's buffer into an rgba32float texture: flat
// element e in texel e / 4, component e % 4, OPERAND_W texels per row (gpu/operands.rs).
// Every other device compiles the buffer variant that build.rs writes: each such operand a
// storage array of vec4 texels, each read a load from it.
const OPERAND_W: u32 = 1024u;

// Where flat element e of an operand texture lives.
fn texel_at(e: u32) -> vec2<u32> {
    let t = e / 4u;
    return vec2<u32>(t % OPERAND_W, t / OPERAND_W);
}

// Flat element e of an operand texture. An index out of range reads a texel the caller
// discards.
fn texel(t: texture_2d<f32>, e: u32) -> f32 {
    return textureLoad(t, texel_at(e), 0)[e % 4u];
}

// Elements 4 i .. 4 i + 3 of an operand texture.
fn texel4(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    return textureLoad(t, vec2<u32>(i % OPERAND_W, i / OPERAND_W), 0);
}
