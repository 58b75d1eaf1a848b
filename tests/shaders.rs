//! Every `shaders/*.wgsl` parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL for every
//! entry point and every specialisation of its override constants; and every shader agrees with
//! the declarations of the `ops` module that owns it (same stem, the uniform `Params` layout, the
//! storage bindings by number, name and access). Needs no GPU.

use std::collections::{BTreeMap, BTreeSet};

use naga::back::{glsl, hlsl, msl, spv, PipelineConstants};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage, StorageAccess, TypeInner};
use vqgpu::gpu::{Access, OverrideAxis, Shader};
use vqgpu::ops::{LIBRARIES, SHADERS};

/// The shader of `shaders/{file}` as the engine declares it.
fn declared(file: &str) -> &'static Shader {
    SHADERS
        .iter()
        .find(|s| s.file_name() == file)
        .copied()
        .unwrap_or_else(|| panic!("shaders/{file} is not in vqgpu::ops::SHADERS"))
}

/// Every combination of the override values the host code uses: the declared axes, `extra`, and
/// both values of every boolean override.
fn specialisations(
    module: &naga::Module,
    shader: &Shader,
    extra: Option<OverrideAxis>,
) -> Vec<PipelineConstants> {
    let mut axes: Vec<Vec<Vec<(String, f64)>>> = shader
        .overrides
        .iter()
        .chain(extra.as_ref())
        .map(|axis| {
            axis.iter()
                .map(|choice| choice.iter().map(|&(n, v)| (n.to_string(), v)).collect())
                .collect()
        })
        .collect();
    let covered: BTreeSet<String> = axes
        .iter()
        .flatten()
        .flatten()
        .map(|(n, _)| n.clone())
        .collect();
    for (_, o) in module.overrides.iter() {
        let name = o.name.clone().expect("overrides are named");
        if covered.contains(&name) {
            continue;
        }
        let is_bool = matches!(
            module.types[o.ty].inner,
            TypeInner::Scalar(naga::Scalar::BOOL)
        );
        assert!(
            is_bool,
            "{}: override {name} is not boolean: declare the values the host uses in its Shader",
            shader.stem
        );
        axes.push(vec![vec![(name.clone(), 0.0)], vec![(name.clone(), 1.0)]]);
    }
    let mut variants = vec![PipelineConstants::default()];
    for axis in axes {
        let mut next = Vec::new();
        for base in &variants {
            for choice in &axis {
                let mut c = base.clone();
                c.extend(choice.iter().cloned());
                next.push(c);
            }
        }
        variants = next;
    }
    variants
}

/// The WGSL name of a scalar type.
fn scalar_name(inner: &TypeInner) -> Option<&'static str> {
    match inner {
        TypeInner::Scalar(naga::Scalar::U32) => Some("u32"),
        TypeInner::Scalar(naga::Scalar::I32) => Some("i32"),
        TypeInner::Scalar(naga::Scalar::F32) => Some("f32"),
        _ => None,
    }
}

/// The uniform block at binding 0 and the storage bindings of `module` match `shader`.
fn check_interface(module: &naga::Module, shader: &Shader) {
    let file = shader.file_name();
    let module_stem = shader.module.rsplit("::").next().unwrap();
    assert_eq!(
        module_stem, shader.stem,
        "{file} is owned by {}: the host module must have the shader's stem",
        shader.module
    );
    let mut storage = BTreeMap::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        assert_eq!(binding.group, 0, "{file}: only bind group 0 is used");
        let name = var.name.clone().unwrap_or_default();
        match var.space {
            AddressSpace::Uniform => {
                assert_eq!(binding.binding, 0, "{file}: the uniform block is binding 0");
                let TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
                    panic!("{file}: the uniform block is not a struct");
                };
                assert_eq!(
                    module.types[var.ty].name.as_deref(),
                    Some("Params"),
                    "{file}: the uniform struct is Params"
                );
                assert_eq!(
                    *span as usize, shader.params.size,
                    "{file}: Params is {span} bytes in WGSL, {} in Rust",
                    shader.params.size
                );
                let wgsl: Vec<(String, usize, Option<&str>)> = members
                    .iter()
                    .map(|m| {
                        let name = m.name.clone().unwrap_or_default();
                        (
                            name,
                            m.offset as usize,
                            scalar_name(&module.types[m.ty].inner),
                        )
                    })
                    .filter(|(n, ..)| !n.starts_with('_'))
                    .collect();
                let rust: Vec<(String, usize, Option<&str>)> = shader
                    .params
                    .fields
                    .iter()
                    .filter(|f| !f.name.starts_with('_'))
                    .map(|f| (f.name.to_string(), f.offset, Some(f.ty)))
                    .collect();
                assert_eq!(
                    wgsl, rust,
                    "{file}: Params fields (name, offset, type) differ"
                );
            }
            AddressSpace::Storage { access } => {
                let mode = if access.contains(StorageAccess::STORE) {
                    Access::ReadWrite
                } else {
                    Access::Read
                };
                let old = storage.insert(binding.binding, (name, mode));
                assert!(
                    old.is_none(),
                    "{file}: binding {} used twice",
                    binding.binding
                );
            }
            AddressSpace::Handle => {
                // only sampled 2-D float textures, read with textureLoad
                let texture = matches!(
                    module.types[var.ty].inner,
                    TypeInner::Image {
                        dim: naga::ImageDimension::D2,
                        arrayed: false,
                        class: naga::ImageClass::Sampled {
                            kind: naga::ScalarKind::Float,
                            multi: false
                        }
                    }
                );
                assert!(texture, "{file}: {name} is not a texture_2d<f32>");
                let old = storage.insert(binding.binding, (name, Access::Texture));
                assert!(
                    old.is_none(),
                    "{file}: binding {} used twice",
                    binding.binding
                );
            }
            other => panic!("{file}: unexpected address space {other:?} of {name}"),
        }
    }
    let rust: BTreeMap<u32, (String, Access)> = shader
        .bindings
        .iter()
        .map(|b| (b.index, (b.name.to_string(), b.access)))
        .collect();
    assert_eq!(
        rust.len(),
        shader.bindings.len(),
        "{file}: a binding is declared twice in Rust"
    );
    assert_eq!(
        storage, rust,
        "{file}: storage bindings (number, name, access) differ"
    );
}

/// The workgroup memory every adapter offers: WebGPU's default limit and Vulkan's minimum.
const MIN_WORKGROUP_BYTES: u32 = 16384;

/// Bytes of workgroup memory the entry point `entry` of a specialised `module` uses.
fn workgroup_bytes(module: &naga::Module, info: &naga::valid::ModuleInfo, entry: &str) -> u32 {
    let index = module
        .entry_points
        .iter()
        .position(|e| e.name == entry)
        .expect("the entry point is in its module");
    let uses = info.get_entry_point(index);
    module
        .global_variables
        .iter()
        .filter(|&(handle, v)| v.space == AddressSpace::WorkGroup && !uses[handle].is_empty())
        .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
        .sum()
}

/// The subgroup lanes the collective library is checked with: from 1 to the most there can be.
const LIBRARY_LANES: OverrideAxis = &[
    &[("SUBGROUP_LANES", 1.0)],
    &[("SUBGROUP_LANES", 8.0)],
    &[("SUBGROUP_LANES", 32.0)],
    &[("SUBGROUP_LANES", 64.0)],
    &[("SUBGROUP_LANES", 128.0)],
];

/// Translates every version of a family: the file alone, or with each version of its library.
fn translate(shader: &Shader) -> usize {
    match shader.library {
        None => translate_version(shader, false),
        Some(library) => {
            assert_eq!(library.lanes_override, "SUBGROUP_LANES");
            translate_version(shader, false) + translate_version(shader, true)
        }
    }
}

/// Parses, validates and translates `shader` with its library's subgroup version if
/// `subgroup_library`, else with its plain version (if it has a library).
fn translate_version(shader: &Shader, subgroup_library: bool) -> usize {
    let file = if subgroup_library {
        format!("{} with its library's subgroup version", shader.file_name())
    } else {
        shader.file_name()
    };
    let source = shader.wgsl(subgroup_library);
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(&source)));
    // only a file that says it uses subgroups may, and a library's subgroup version: they are
    // compiled only where subgroups exist
    let capabilities = if shader.subgroups || subgroup_library {
        Capabilities::SUBGROUP
    } else {
        Capabilities::empty()
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file}: validation failed: {e:?}"));
    assert!(!module.entry_points.is_empty(), "{file} has no entry point");
    check_interface(&module, shader);
    let mut translations = 0;
    let lanes = subgroup_library.then_some(LIBRARY_LANES);
    for constants in specialisations(&module, shader, lanes) {
        for ep in &module.entry_points {
            assert_eq!(
                ep.stage,
                ShaderStage::Compute,
                "{file}: only compute shaders belong here"
            );
            let what = format!("{file}:{} with {constants:?}", ep.name);
            let (m, i) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ShaderStage::Compute, &ep.name)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{what}: overrides: {e:?}"));
            let shared = workgroup_bytes(&m, &i, &ep.name);
            assert!(
                shared <= MIN_WORKGROUP_BYTES,
                "{what}: {shared} bytes of workgroup memory, more than every adapter has"
            );

            let words = spv::write_vec(
                &m,
                &i,
                &spv::Options::default(),
                Some(&spv::PipelineOptions {
                    shader_stage: ShaderStage::Compute,
                    entry_point: ep.name.clone(),
                }),
            )
            .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e:?}"));
            assert_eq!(words[0], 0x0723_0203, "{what}: SPIR-V magic");

            let (metal, _) = msl::write_string(
                &m,
                &i,
                &msl::Options::default(),
                &msl::PipelineOptions {
                    entry_point: Some((ShaderStage::Compute, ep.name.clone())),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{what}: MSL: {e:?}"));
            assert!(
                metal.contains("kernel"),
                "{what}: MSL has no kernel function"
            );

            let mut hlsl_out = String::new();
            let hlsl_pipeline = hlsl::PipelineOptions {
                entry_point: Some((ShaderStage::Compute, ep.name.clone())),
            };
            let hlsl_options = hlsl::Options::default();
            hlsl::Writer::new(&mut hlsl_out, &hlsl_options, &hlsl_pipeline)
                .write(&m, &i, None)
                .unwrap_or_else(|e| panic!("{what}: HLSL: {e:?}"));
            assert!(
                hlsl_out.contains("numthreads"),
                "{what}: HLSL has no compute entry"
            );

            let mut glsl_out = String::new();
            let glsl_options = glsl::Options {
                version: glsl::Version::new_gles(310),
                ..Default::default()
            };
            let glsl_pipeline = glsl::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: ep.name.clone(),
                multiview: None,
            };
            glsl::Writer::new(
                &mut glsl_out,
                &m,
                &i,
                &glsl_options,
                &glsl_pipeline,
                Default::default(),
            )
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{what}: GLSL: {e:?}"));
            assert!(
                glsl_out.contains("local_size_x"),
                "{what}: GLSL has no compute layout"
            );
            translations += 1;
        }
    }
    translations
}

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut counts = BTreeMap::new();
    let mut libraries = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.expect("readable entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("wgsl"),
            "shaders/ holds only WGSL files, found {name}"
        );
        let on_disk = std::fs::read_to_string(&path).expect("readable shader");
        if name == "texel.wgsl" {
            // checked as part of every family that reads texture copies
            assert_eq!(
                on_disk,
                vqgpu::ops::texel::SOURCE,
                "embedded {name} differs from the file"
            );
            assert!(
                SHADERS.iter().any(|s| s.reads_copies()),
                "no family reads texture copies"
            );
            continue;
        }
        if let Some(embedded) = library_file(&name) {
            // checked as part of every family that calls it
            assert_eq!(on_disk, embedded, "embedded {name} differs from the file");
            libraries.insert(name);
            continue;
        }
        let shader = declared(&name);
        assert_eq!(
            on_disk, shader.source,
            "embedded {name} differs from the file"
        );
        counts.insert(name.clone(), translate(shader));
    }
    // every family the engine embeds is among the files checked
    for shader in SHADERS {
        assert!(
            counts.contains_key(&shader.file_name()),
            "{} not found in shaders/",
            shader.file_name()
        );
    }
    for library in LIBRARIES {
        for name in library.file_names() {
            assert!(libraries.contains(&name), "{name} not found in shaders/");
        }
        assert!(
            SHADERS
                .iter()
                .any(|s| s.library.is_some_and(|l| std::ptr::eq(l, library))),
            "no family calls the {} library",
            library.stem
        );
    }
    println!("translations per file: {counts:?}");
}

/// The embedded text of `shaders/{name}` if it is a version of a library.
fn library_file(name: &str) -> Option<&'static str> {
    LIBRARIES.iter().find_map(|library| {
        let [plain, subgroups] = library.file_names();
        if name == plain {
            Some(library.plain)
        } else if name == subgroups {
            Some(library.subgroups)
        } else {
            None
        }
    })
}

/// A Rust declaration that disagrees with its WGSL file fails the interface check, so the check
/// cannot pass vacuously.
#[test]
#[should_panic(expected = "storage bindings")]
fn a_binding_declared_with_the_wrong_access_is_caught() {
    let real = declared("adam.wgsl");
    let mut bindings = real.bindings.to_vec();
    bindings[0].access = Access::ReadWrite;
    let broken = Shader {
        bindings: Box::leak(bindings.into_boxed_slice()),
        ..*real
    };
    let module = naga::front::wgsl::parse_str(&broken.wgsl(false)).unwrap();
    check_interface(&module, &broken);
}

#[test]
#[should_panic(expected = "Params fields")]
fn a_params_field_at_the_wrong_offset_is_caught() {
    let real = declared("vq.wgsl");
    let mut fields = real.params.fields.to_vec();
    fields.swap(0, 1);
    let broken = Shader {
        params: vqgpu::gpu::ParamsLayout {
            fields: Box::leak(fields.into_boxed_slice()),
            ..real.params
        },
        ..*real
    };
    let module = naga::front::wgsl::parse_str(&broken.wgsl(false)).unwrap();
    check_interface(&module, &broken);
}

/// The kernels that read texture copies (every family that binds a texture, each compiled with
/// `shaders/texel.wgsl` appended) find texel i where `Gpu::texture_copy` puts it.
#[test]
fn texture_copies_have_the_row_length_the_kernels_use() {
    let mut readers = Vec::new();
    for shader in SHADERS {
        let module = naga::front::wgsl::parse_str(&shader.wgsl(false)).unwrap();
        let binds_texture = module
            .global_variables
            .iter()
            .any(|(_, g)| matches!(module.types[g.ty].inner, naga::TypeInner::Image { .. }));
        if !binds_texture {
            continue;
        }
        let file = shader.file_name();
        let (_, constant) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some("TEXEL_ROW_SHIFT"))
            .unwrap_or_else(|| panic!("{file} binds a texture but declares no TEXEL_ROW_SHIFT"));
        let naga::Expression::Literal(naga::Literal::U32(shift)) =
            module.global_expressions[constant.init]
        else {
            panic!("{file}: TEXEL_ROW_SHIFT is not a u32 literal");
        };
        assert_eq!(shift, vqgpu::gpu::TEXEL_ROW_SHIFT, "{file}");
        readers.push(file);
    }
    assert_eq!(
        readers,
        [
            "adam.wgsl",
            "blocked.wgsl",
            "elementwise.wgsl",
            "reduce.wgsl",
            "softmax.wgsl"
        ],
        "the families that read texture copies"
    );
    assert_eq!(vqgpu::gpu::TEXELS_PER_ROW, 1 << vqgpu::gpu::TEXEL_ROW_SHIFT);
}
