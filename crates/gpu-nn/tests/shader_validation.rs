//! Every WGSL variant the crate compiles validates with naga: the buffer variant of every
//! kernel file (what GPUs run) and, with the CPU-driver kernels, its texture variant, both
//! as `build.rs` wrote them (`common.wgsl` prepended). Reports all failures at once.

use std::path::{Path, PathBuf};

/// The `.wgsl` files of `dir`, sorted.
fn wgsl_files(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{} unreadable: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    files
}

/// Why `src` (the variant in `path`) does not validate, if it does not.
fn check(path: &Path, src: &str, failures: &mut Vec<String>) {
    let module = match naga::front::wgsl::parse_str(src) {
        Ok(m) => m,
        Err(e) => {
            failures.push(format!("{}: {}", path.display(), e.emit_to_string(src)));
            return;
        }
    };
    // Only `*_subgroup.wgsl` files may use subgroup operations: the crate loads them only on
    // devices with the feature, so every other file must validate without it.
    let subgroup_file = path
        .file_stem()
        .is_some_and(|s| s.to_string_lossy().ends_with("_subgroup"));
    let (caps, stages, ops) = if subgroup_file {
        (
            naga::valid::Capabilities::SUBGROUP,
            naga::valid::ShaderStages::COMPUTE,
            naga::valid::SubgroupOperationSet::all(),
        )
    } else {
        (
            naga::valid::Capabilities::empty(),
            naga::valid::ShaderStages::empty(),
            naga::valid::SubgroupOperationSet::empty(),
        )
    };
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    v.subgroup_stages(stages).subgroup_operations(ops);
    if let Err(e) = v.validate(&module) {
        failures.push(format!("{}: {}", path.display(), e.emit_to_string(src)));
    }
    // Browsers (Tint) reject decimal literals past f32's range that naga rounds.
    for lit in out_of_range_literals(src) {
        failures.push(format!("{}: literal {lit} is outside f32", path.display()));
    }
    // An op file must expose compute entry points.
    if module.entry_points.is_empty() {
        failures.push(format!("{}: no entry points", path.display()));
    }
}

#[test]
fn every_generated_variant_validates() {
    let shaders = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let sources: Vec<PathBuf> = wgsl_files(&shaders)
        .into_iter()
        .filter(|p| !p.ends_with("common.wgsl"))
        .collect();
    assert!(
        !sources.is_empty(),
        "no .wgsl files in {}",
        shaders.display()
    );
    let mut failures = Vec::new();
    // The prelude alone: valid, and no entry points or bindings to clash with a file's.
    let common = std::fs::read_to_string(shaders.join("common.wgsl")).expect("common.wgsl");
    match naga::front::wgsl::parse_str(&common) {
        Ok(m) if m.entry_points.is_empty() && m.global_variables.is_empty() => {}
        Ok(_) => failures.push("common.wgsl: has entry points or bindings".to_string()),
        Err(e) => failures.push(format!("common.wgsl: {}", e.emit_to_string(&common))),
    }
    let out = Path::new(env!("OUT_DIR")).join("wgsl");
    let buffers = wgsl_files(&out.join("buffers"));
    let textures = wgsl_files(&out.join("textures"));
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        names(&buffers),
        names(&sources),
        "a buffer variant per kernel file"
    );
    if cfg!(feature = "cpu-drivers") {
        assert_eq!(
            names(&textures),
            names(&sources),
            "a texture variant per kernel file"
        );
    }
    let mut with_operands = 0;
    for path in buffers.iter().chain(&textures) {
        let src = std::fs::read_to_string(path).expect("readable variant");
        check(path, &src, &mut failures);
        let buffer_variant = path.parent().is_some_and(|d| d.ends_with("buffers"));
        if buffer_variant && src.contains(": texture_2d<f32>;") {
            failures.push(format!("{}: declares a texture operand", path.display()));
        }
        // The generated helpers (common.wgsl has `texel4` itself, no `texel4_`).
        if buffer_variant && src.contains("fn texel4_") {
            with_operands += 1;
        }
    }
    // batchnorm, conv, conv_subgroup, elementwise, matmul_subgroup.
    assert_eq!(with_operands, 5, "kernel files with texel operands");
    assert!(
        failures.is_empty(),
        "{} of {} variants failed:\n{}",
        failures.len(),
        buffers.len() + textures.len(),
        failures.join("\n")
    );
}

/// Decimal float literals whose value lies beyond f32::MAX (naga rounds them to the max,
/// Chrome's Tint refuses the shader). Skips identifiers and hex literals.
fn out_of_range_literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit()
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.'));
        if !starts || b.get(i..i + 2) == Some(b"0x") || b.get(i..i + 2) == Some(b"0X") {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
            j += 1;
        }
        if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
            j += 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
        let lit = &src[i..j];
        if lit
            .parse::<f64>()
            .is_ok_and(|v| v.abs() > f64::from(f32::MAX))
        {
            out.push(lit.to_string());
        }
        i = j.max(i + 1);
    }
    out
}

#[test]
fn literal_scanner_flags_only_values_past_f32() {
    let src = "const A = -3.4028235e38; const B = -0x1.fffffep+127f; let c = 1e38 * x2e39; 4e38f";
    assert_eq!(out_of_range_literals(src), ["3.4028235e38", "4e38"]);
}

/// Every shader file is used by some launcher (no dead WGSL that no test reaches).
#[test]
fn every_shader_is_included_by_the_crate() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // build.rs prepends common.wgsl to every file.
    let mut src = std::fs::read_to_string(root.join("build.rs")).expect("build.rs");
    let mut stack = vec![root.join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("src readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                src.push_str(&std::fs::read_to_string(&p).expect("readable"));
            }
        }
    }
    let shaders = root.join("shaders");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&shaders)
        .expect("shaders readable")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".wgsl") && !src.contains(&format!("\"{name}\"")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "shaders not used by any launcher: {missing:?}"
    );
}
