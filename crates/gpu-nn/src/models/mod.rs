//! Building blocks of the classic image networks, with torchvision's parameter names.
//! Residual = add, inception = convs + pool + concat: no bespoke kernels.

mod blocks;

pub use blocks::*;
