//! The nnlab library: what the app, the headless subcommands and the tests share.
//!
//! `data` compiles for the browser too; the CLI-only parts (progress bars, blocking waits)
//! are native-only.

pub mod app;
pub mod data;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
