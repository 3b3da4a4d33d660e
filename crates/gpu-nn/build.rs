//! Writes the WGSL each kernel file is compiled from into `OUT_DIR/wgsl/`: `common.wgsl`
//! (the shared helpers) prepended, in the buffer variant every device compiles
//! (`buffers/`) and, where operand textures are built, the texture variant (`textures/`).
//! See `build/wgsl.rs`; `tests/shader_validation.rs` validates every file written here.

use std::path::{Path, PathBuf};

#[path = "build/wgsl.rs"]
#[allow(dead_code)] // `operands` serves the tests
mod wgsl;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(operand_textures)");
    // Operand textures are a native CPU-driver (lavapipe) path: the browser never gets one.
    let textures = std::env::var_os("CARGO_FEATURE_CPU_DRIVERS").is_some()
        && std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a != "wasm32");
    if textures {
        println!("cargo::rustc-cfg=operand_textures");
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let shaders = manifest.join("shaders");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("wgsl");
    println!("cargo::rerun-if-changed=shaders");
    println!("cargo::rerun-if-changed=build/wgsl.rs");
    let common = read(&shaders.join("common.wgsl"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&shaders)
        .unwrap_or_else(|e| panic!("{}: {e}", shaders.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl") && !p.ends_with("common.wgsl"))
        .collect();
    files.sort();
    for dir in ["buffers", "textures"] {
        std::fs::create_dir_all(out.join(dir)).expect("OUT_DIR is writable");
    }
    for file in files {
        let name = file.file_name().expect("a file name");
        let source = format!("{common}{}", read(&file));
        let buffers =
            wgsl::buffer_variant(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        write(&out.join("buffers").join(name), &buffers);
        if textures {
            write(&out.join("textures").join(name), &source);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes only what changed, so that an unchanged shader does not rebuild the crate.
fn write(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
