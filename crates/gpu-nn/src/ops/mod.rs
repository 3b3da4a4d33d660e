//! Ops, one module per op family, each with its WGSL file in `shaders/`, its launchers, its
//! backward rules and a `cpu` module of reference implementations.

pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod pool;
pub mod reduce;
pub mod visual;
