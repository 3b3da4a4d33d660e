//! Ops, one module per op family, each with its WGSL file in `shaders/`, its launchers, its
//! backward rules and a `cpu` module of reference implementations.

pub mod concat;
pub mod dropout;
pub mod elementwise;
pub mod pool;
pub mod reduce;
