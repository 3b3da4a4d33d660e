// Tensors as pictures: a grid of grey tiles written straight into an rgba8unorm storage
// texture that the UI samples (no CPU round trip). Tile t shows plane(s) t of the input,
// each scaled to its own min..max; a one-pixel gap separates tiles.

struct Params {
    offset: u32, // first value of tile 0
    tiles: u32,  // tiles with data; grid slots after them are gap-coloured
    h: u32,      // tile height
    w: u32,      // tile width
    cols: u32,   // tiles per grid row
    chans: u32,  // consecutive planes averaged into one tile (filters: input channels)
    len: u32,    // values per plane that exist; later ones read as 0 (a padded strip)
    width: u32,  // texture size
    height: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var img: texture_storage_2d<rgba8unorm, write>;

const WG: u32 = 64u;
const GAP: f32 = 0.15686275; // 40 / 255
const BIG: f32 = 0x1.fffffep+127f;

var<workgroup> lo_s: array<f32, 64>;
var<workgroup> hi_s: array<f32, 64>;

// Mean over the tile's planes of value i (row-major within the tile).
fn value(t: u32, i: u32) -> f32 {
    if (i >= p.len) {
        return 0.0;
    }
    let plane = p.h * p.w;
    var s = 0.0;
    for (var c = 0u; c < p.chans; c++) {
        s += x[p.offset + (t * p.chans + c) * plane + i];
    }
    return s / f32(p.chans);
}

// One workgroup per grid slot: the tile's range by a workgroup reduction, then its pixels
// and the gap to its right and below.
@compute @workgroup_size(64)
fn tiles(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
    let t = wg.x;
    let n = p.h * p.w;
    let has = t < p.tiles;
    var lo = BIG;
    var hi = -BIG;
    if (has) {
        for (var i = li; i < n; i += WG) {
            let v = value(t, i);
            lo = min(lo, v);
            hi = max(hi, v);
        }
    }
    lo_s[li] = lo;
    hi_s[li] = hi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            lo_s[li] = min(lo_s[li], lo_s[li + s]);
            hi_s[li] = max(hi_s[li], hi_s[li + s]);
        }
        workgroupBarrier();
    }
    let l = lo_s[0];
    let span = select(1.0, hi_s[0] - l, hi_s[0] > l);
    let cw = p.w + 1u;
    let r0 = (t / p.cols) * (p.h + 1u);
    let c0 = (t % p.cols) * cw;
    let cells = (p.h + 1u) * cw;
    for (var i = li; i < cells; i += WG) {
        let y = i / cw;
        let xx = i % cw;
        let px = vec2u(c0 + xx, r0 + y);
        if (px.x >= p.width || px.y >= p.height) {
            continue;
        }
        var g = GAP;
        if (has && y < p.h && xx < p.w) {
            g = clamp((value(t, y * p.w + xx) - l) / span, 0.0, 1.0);
        }
        textureStore(img, px, vec4f(g, g, g, 1.0));
    }
}
