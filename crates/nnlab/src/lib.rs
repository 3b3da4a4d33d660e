//! The nnlab library: what the app, the headless subcommands and the tests share.
//!
//! `registry` (the models), `core` (the training core), `data`, `folder`, `checkpoint`, `weights`
//! and `images` compile for the browser too; the subcommands (`cli`: progress bars,
//! blocking waits, files) are native-only.

pub mod app;
pub mod bundled;
pub mod checkpoint;
pub mod core;
pub mod data;
pub mod export;
pub mod folder;
pub mod images;
pub mod registry;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
