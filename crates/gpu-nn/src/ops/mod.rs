//! Ops, one module per op family, each with its WGSL file in `shaders/`, its launchers, its
//! backward rules and a `cpu` module of reference implementations.

<<<<<<< HEAD
pub mod concat;
pub mod dropout;
pub mod elementwise;
pub mod pool;
=======
pub mod batchnorm;
pub mod elementwise;
pub mod loss;
>>>>>>> norm-loss
pub mod reduce;
