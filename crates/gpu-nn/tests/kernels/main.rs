//! Kernel tests: every GPU kernel against its CPU reference on odd shapes, forward and
//! backward, plus finite-difference checks of the CPU references. Runs on lavapipe in CI.

mod common;

mod autograd;
mod conv;
mod elementwise;
mod reduce;
