//! Bind-group layouts and compute pipelines, cached per kernel; the WGSL each device
//! gets (the browser's directives, the texel-buffer rewrite for devices without operand
//! textures).

use super::*;

/// The WGSL a browser gets for `source`. Browsers compile WGSL themselves and want subgroup
/// operations enabled by a directive that naga (which validates the files natively) does not
/// parse yet; the uniformity rule is relaxed because the kernels broadcast inside loops
/// whose bounds are uniform but which Tint's analysis cannot always prove so.
#[cfg(target_arch = "wasm32")]
pub(super) fn wgsl_source(
    source: std::borrow::Cow<'static, str>,
    subgroups: bool,
) -> std::borrow::Cow<'static, str> {
    if subgroups {
        format!("enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n{source}").into()
    } else {
        source
    }
}

/// The WGSL wgpu gets for `source` natively: the file as it is (naga enables subgroup
/// operations from the device's features).
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn wgsl_source(
    source: std::borrow::Cow<'static, str>,
    _subgroups: bool,
) -> std::borrow::Cow<'static, str> {
    source
}

/// `source` with its operand textures (`var NAME: texture_2d<f32>;`) declared as storage
/// buffers of texels (`array<vec4<f32>>`, the layout the textures copy) and its `texel` and
/// `texel4` calls on them reading those buffers: the WGSL of a kernel with
/// [`Access::Texels`] bindings on a device without operand textures. The kernels reach
/// their operands only through those helpers, so the rewrite needs no parser.
pub(super) fn operands_as_buffers(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 1024);
    let mut names = Vec::new();
    for line in source.lines() {
        // A comment after the declaration stays out of the match.
        let code = line
            .split_once("//")
            .map_or(line, |(code, _)| code)
            .trim_end();
        let decl = code.split_once(" var ").and_then(|(head, rest)| {
            rest.strip_suffix(": texture_2d<f32>;")
                .map(|name| (head, name))
        });
        match decl {
            Some((head, name)) => {
                out.push_str(&format!(
                    "{head} var<storage, read> {name}: array<vec4<f32>>;\n"
                ));
                names.push(name);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for n in names {
        out = out
            .replace(&format!("texel({n}, "), &format!("texel_{n}("))
            .replace(&format!("texel4({n}, "), &format!("texel4_{n}("));
        out.push_str(&format!(
            "fn texel_{n}(e: u32) -> f32 {{ return {n}[e >> 2u][e & 3u]; }}\n\
             fn texel4_{n}(i: u32) -> vec4<f32> {{ return {n}[i]; }}\n"
        ));
    }
    out
}

pub(crate) struct Layout {
    pub(super) bind: wgpu::BindGroupLayout,
    pub(super) pipeline: wgpu::PipelineLayout,
}

impl Gpu {
    pub(super) fn layout(&self, bindings: &[Access]) -> Arc<Layout> {
        let mut layouts = lock(&self.0.layouts);
        if let Some(l) = layouts.get(bindings) {
            return Arc::clone(l);
        }
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
        for (i, a) in bindings.iter().enumerate() {
            let binding = i as u32 + 1;
            entries.push(match a {
                Access::Read | Access::Write => entry(
                    binding,
                    wgpu::BufferBindingType::Storage {
                        read_only: matches!(a, Access::Read),
                    },
                ),
                Access::Texels if !self.0.textures => entry(
                    binding,
                    wgpu::BufferBindingType::Storage { read_only: true },
                ),
                Access::Texels => wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                Access::Image => wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba8Unorm,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    count: None,
                },
            });
        }
        let bind = self
            .0
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            });
        let pipeline = self
            .0
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bind)],
                immediate_size: 0,
            });
        let l = Arc::new(Layout { bind, pipeline });
        layouts.insert(bindings.to_vec(), Arc::clone(&l));
        l
    }

    pub(super) fn pipeline(&self, k: &Kernel, layout: &Layout) -> Arc<wgpu::ComputePipeline> {
        let key = (k.file, k.name);
        if let Some(p) = lock(&self.0.pipelines).get(&key) {
            return Arc::clone(p);
        }
        let subgroup_file = k.file.ends_with("_subgroup.wgsl");
        // Labels name gpu-nn, so that its errors are told apart from the UI's (see
        // `from_device`) and a pipeline that failed is evicted (see `take_error`).
        let (module_label, pipeline_label) = (
            format!("{LABEL} {}", k.file),
            format!("{LABEL} {} {}", k.file, k.name),
        );
        let module = self
            .0
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&module_label),
                source: wgpu::ShaderSource::Wgsl(wgsl_source(
                    if !self.0.textures && k.bindings.contains(&Access::Texels) {
                        operands_as_buffers(k.source).into()
                    } else {
                        k.source.into()
                    },
                    subgroup_file,
                )),
            });
        // The subgroup kernels' row blocks follow the device's subgroup size.
        let mut constants = k.constants.to_vec();
        if subgroup_file {
            constants.push(("LANES", f64::from(self.0.lanes.max(4))));
        }
        let p = Arc::new(
            self.0
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&pipeline_label),
                    layout: Some(&layout.pipeline),
                    module: &module,
                    entry_point: Some(k.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        ..Default::default()
                    },
                    cache: None,
                }),
        );
        lock(&self.0.pipelines).insert(key, Arc::clone(&p));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::operands_as_buffers;

    #[test]
    fn texture_operands_become_texel_buffers_and_their_reads_follow() {
        let src = "@group(0) @binding(1) var x: texture_2d<f32>; // gy\n\
                   @group(0) @binding(2) var<storage, read_write> y: array<f32>;\n\
                   fn f(i: u32) -> f32 { return texel(x, i) + texel4(x, i).w; }\n";
        let out = operands_as_buffers(src);
        assert!(out.contains("@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;\n"));
        assert!(out.contains("return texel_x(i) + texel4_x(i).w;"));
        assert!(out.contains("fn texel_x(e: u32) -> f32 { return x[e >> 2u][e & 3u]; }"));
        assert!(!out.contains("texture_2d"), "{out}");
        // Without texture operands the source is unchanged.
        let plain = "fn g() {}\n";
        assert_eq!(operands_as_buffers(plain), plain);
    }

    /// The buffer variant of every shader with operand textures is what devices without
    /// them compile: naga validates it as it validates the files themselves.
    #[test]
    fn every_buffer_variant_validates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let common = std::fs::read_to_string(dir.join("common.wgsl")).expect("common.wgsl");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("shaders/") {
            let path = entry.expect("entry").path();
            let body = std::fs::read_to_string(&path).expect("shader");
            if path.ends_with("common.wgsl") || !body.contains(": texture_2d<f32>;") {
                continue;
            }
            let src = operands_as_buffers(&(common.clone() + &body));
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
            let caps = if path.to_string_lossy().ends_with("_subgroup.wgsl") {
                naga::valid::Capabilities::SUBGROUP
            } else {
                naga::valid::Capabilities::empty()
            };
            let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
            v.subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all());
            if let Err(e) = v.validate(&module) {
                panic!("{}: {}", path.display(), e.emit_to_string(&src));
            }
            checked += 1;
        }
        assert_eq!(checked, 5, "shaders with operand textures");
    }
}
