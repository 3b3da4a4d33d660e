//! Ops, one module per op family, each with its WGSL file in `shaders/`, its launchers, its
//! backward rules and a `cpu` module of reference implementations.

pub mod conv;
pub mod elementwise;
pub mod reduce;
