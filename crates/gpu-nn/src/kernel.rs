//! Kernel descriptors and the params builder. WGSL sources live in `shaders/`, one file per
//! op family; each entry point takes a uniform `Params` struct at binding 0 and its storage
//! buffers at bindings 1.. in the order given by [`Kernel::bindings`]. What a device compiles
//! is a variant of the file made at build time (`build.rs`): operands read from buffers, or
//! from textures on CPU drivers that copy them there.

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    Write,
    /// `texture_storage_2d<rgba8unorm, write>`: a picture for the UI.
    Image,
    /// A read-only operand read four values (a texel) at a time through `texel` and
    /// `texel4` (common.wgsl): in the buffer variant a `var<storage, read>` array of vec4
    /// (the tensor's own buffer), in the texture variant a `texture_2d<f32>` the operand is
    /// copied into first (lavapipe gathers texels faster than it loads storage).
    Texels,
}

/// One compute entry point in one WGSL file.
pub(crate) struct Kernel {
    /// File name, for the pipeline cache key and labels.
    pub file: &'static str,
    /// WGSL of the whole file, operands read from buffers.
    pub source: &'static str,
    /// WGSL of the whole file, operands read from textures.
    #[cfg(operand_textures)]
    pub texture_source: &'static str,
    /// Entry point name.
    pub entry: &'static str,
    /// Storage bindings 1.. in order.
    pub bindings: &'static [Access],
    /// Name of the `static`: with the file, the pipeline cache key (one entry point may be
    /// compiled several times with different override constants).
    pub name: &'static str,
    /// Values of WGSL `override` constants (e.g. a tile size), empty for the defaults.
    pub constants: &'static [(&'static str, f64)],
}

/// Declares `static` kernels of one WGSL file:
/// `kernels!("elementwise.wgsl"; UNARY = "unary_fwd" [R, W], ...)`; an optional
/// `(NAME = value, ...)` after the bindings sets WGSL override constants.
macro_rules! kernels {
    ($file:literal; $($name:ident = $entry:literal [$($acc:ident),*]
        $(($($cname:ident = $cval:literal),*))?),* $(,)?) => {
        // The variants `build.rs` wrote, `common.wgsl` prepended (WGSL has no include).
        const SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/wgsl/buffers/", $file));
        #[cfg(operand_textures)]
        const TEXTURE_SOURCE: &str =
            include_str!(concat!(env!("OUT_DIR"), "/wgsl/textures/", $file));
        $(
            pub(crate) static $name: $crate::kernel::Kernel = $crate::kernel::Kernel {
                file: $file,
                source: SOURCE,
                #[cfg(operand_textures)]
                texture_source: TEXTURE_SOURCE,
                entry: $entry,
                bindings: &[$($crate::kernel::kernels!(@acc $acc)),*],
                name: stringify!($name),
                constants: &[$($((stringify!($cname), $cval as f64)),*)?],
            };
        )*
    };
    (@acc R) => { $crate::kernel::Access::Read };
    (@acc W) => { $crate::kernel::Access::Write };
    (@acc I) => { $crate::kernel::Access::Image };
    (@acc T) => { $crate::kernel::Access::Texels };
}
pub(crate) use kernels;

/// Builds the uniform params of one dispatch: 4-byte scalars in declaration order.
#[derive(Default)]
pub(crate) struct Params(pub Vec<u32>);

impl Params {
    pub fn new() -> Self {
        Self(Vec::with_capacity(16))
    }
    /// Appends a u32 (shapes, strides, flags).
    pub fn u(mut self, v: usize) -> Self {
        self.0.push(v as u32);
        self
    }
    /// Appends an f32.
    pub fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
}

/// Number of workgroups of `size` invocations that cover `n` items.
pub(crate) fn groups(n: usize, size: usize) -> [u32; 3] {
    [n.div_ceil(size) as u32, 1, 1]
}
