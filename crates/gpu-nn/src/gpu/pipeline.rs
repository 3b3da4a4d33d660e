//! Bind-group layouts and compute pipelines, cached per kernel; the WGSL each device
//! gets (the variant for how it reads operands, the browser's directives).

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

/// The WGSL of `k`: operands read from textures or from buffers.
fn variant(k: &Kernel, textures: bool) -> &'static str {
    #[cfg(operand_textures)]
    if textures {
        return k.texture_source;
    }
    let _ = textures;
    k.source
}

pub(crate) struct Layout {
    pub(super) bind: wgpu::BindGroupLayout,
    pub(super) pipeline: wgpu::PipelineLayout,
}

impl Gpu {
    /// The bind-group and pipeline layout for `bindings`, texel operands bound as textures
    /// (`textures`) or buffers.
    pub(super) fn layout(&self, bindings: &[Access], textures: bool) -> Arc<Layout> {
        let mut layouts = lock(&self.0.layouts);
        if let Some(l) = layouts.get(&(bindings.to_vec(), textures)) {
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
                Access::Texels if !textures => entry(
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
                label: Some(LABEL),
                entries: &entries,
            });
        let pipeline = self
            .0
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(LABEL),
                bind_group_layouts: &[Some(&bind)],
                immediate_size: 0,
            });
        let l = Arc::new(Layout { bind, pipeline });
        layouts.insert((bindings.to_vec(), textures), Arc::clone(&l));
        l
    }

    /// The pipeline of `k` on `layout`, compiled from its texture variant (`textures`) or
    /// its buffer variant.
    pub(super) fn pipeline(
        &self,
        k: &Kernel,
        layout: &Layout,
        textures: bool,
    ) -> Arc<wgpu::ComputePipeline> {
        let key = (k.file, k.name, textures);
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
                    variant(k, textures).into(),
                    subgroup_file,
                )),
            });
        // The subgroup kernels' row blocks follow the device's subgroup size.
        #[allow(unused_mut)] // without the CPU-driver kernels there is nothing to add
        let mut constants = k.constants.to_vec();
        #[cfg(feature = "cpu-drivers")]
        if let (true, Some(s)) = (subgroup_file, self.cpu_subgroup()) {
            constants.push(("LANES", f64::from(s.lanes)));
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_that_fails_to_compile_is_not_kept() {
        let gpu = pollster::block_on(Gpu::new()).expect("a device (lavapipe without a GPU)");
        let broken = Kernel {
            file: "broken.wgsl",
            source: "this is not WGSL",
            #[cfg(operand_textures)]
            texture_source: "this is not WGSL",
            entry: "main",
            bindings: &[],
            name: "BROKEN",
            constants: &[],
        };
        let layout = gpu.layout(&[], false);
        gpu.pipeline(&broken, &layout, false);
        let key = ("broken.wgsl", "BROKEN", false);
        assert!(lock(&gpu.0.pipelines).contains_key(&key));
        match gpu.take_error() {
            Err(Error::Gpu(e)) => assert!(e.contains("broken.wgsl"), "{e}"),
            other => panic!("expected the compile error, got {other:?}"),
        }
        // Made anew at its next use, not handed out broken; and the error is reported once.
        assert!(!lock(&gpu.0.pipelines).contains_key(&key));
        assert!(gpu.take_error().is_ok());
    }
}
