//! Kernel tests: every GPU kernel against its CPU reference on odd shapes, forward and
//! backward, plus finite-difference checks of the CPU references. Runs on lavapipe in CI.

mod common;

mod autograd;
mod batchnorm;
mod concat;
mod conv;
mod device;
mod dropout;
mod elementwise;
mod loss;
mod matmul;
mod optim;
mod parity;
mod pool;
mod reduce;
mod trace;
mod training;
mod visual;
