//! The nnlab library: what the app, the headless subcommands and the tests share.
//!
//! `data`, `checkpoint` and `images` compile for the browser too; the CLI-only parts
//! (progress bars, blocking waits) are native-only.

pub mod app;
pub mod checkpoint;
pub mod data;
pub mod images;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
#[cfg(not(target_arch = "wasm32"))]
pub mod gan;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
