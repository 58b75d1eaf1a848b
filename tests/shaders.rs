//! Every `shaders/*.wgsl` parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL for every
//! entry point and every specialisation of its override constants. Needs no GPU.

use std::collections::BTreeMap;

use naga::back::{glsl, hlsl, msl, spv, PipelineConstants};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::ShaderStage;

/// Tile shapes (ROWS, COLS, TILE_K) the conv host code chooses from.
const CONV_TILES: [[f64; 3]; 3] = [[4.0, 4.0, 16.0], [2.0, 8.0, 16.0], [1.0, 16.0, 8.0]];

/// Values each override constant takes in the host code, as groups of (name, value) assignments.
fn override_choices(module: &naga::Module, name: &str) -> Vec<Vec<(String, f64)>> {
    let one = |values: &[f64]| {
        values
            .iter()
            .map(|&v| vec![(name.to_string(), v)])
            .collect()
    };
    match name {
        "MODE" => one(&[0.0, 1.0, 2.0]),
        // the tile shape is one choice of three coupled constants, made when ROWS is seen
        "ROWS" => CONV_TILES
            .iter()
            .map(|t| {
                ["ROWS", "COLS", "TILE_K"]
                    .iter()
                    .zip(t)
                    .map(|(n, &v)| (n.to_string(), v))
                    .collect()
            })
            .collect(),
        "COLS" | "TILE_K" => vec![vec![]],
        _ => {
            let (_, o) = module
                .overrides
                .iter()
                .find(|(_, o)| o.name.as_deref() == Some(name))
                .unwrap();
            let is_bool = matches!(
                module.types[o.ty].inner,
                naga::TypeInner::Scalar(naga::Scalar::BOOL)
            );
            assert!(
                is_bool,
                "override {name}: list the values the host uses in tests/shaders.rs"
            );
            one(&[0.0, 1.0])
        }
    }
}

/// Every combination of the override values the host code uses.
fn specialisations(module: &naga::Module) -> Vec<PipelineConstants> {
    let mut variants = vec![PipelineConstants::default()];
    for (_, o) in module.overrides.iter() {
        let name = o.name.clone().expect("overrides are named");
        let mut next = Vec::new();
        for base in &variants {
            for choice in override_choices(module, &name) {
                let mut c = base.clone();
                c.extend(choice);
                next.push(c);
            }
        }
        variants = next;
    }
    variants
}

fn translate(file: &str, source: &str) -> usize {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file}: validation failed: {e:?}"));
    assert!(!module.entry_points.is_empty(), "{file} has no entry point");
    let mut translations = 0;
    for constants in specialisations(&module) {
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
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.expect("readable entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("wgsl"),
            "shaders/ holds only WGSL files, found {name}"
        );
        let source = std::fs::read_to_string(&path).expect("readable shader");
        counts.insert(name.clone(), translate(&name, &source));
    }
    // every family the engine embeds is among the files checked
    for family in vqgpu::gpu::Family::ALL {
        assert!(
            counts.contains_key(family.file_name()),
            "{} not found in shaders/",
            family.file_name()
        );
        let on_disk = std::fs::read_to_string(dir.join(family.file_name())).unwrap();
        assert_eq!(
            on_disk,
            family.source(),
            "embedded {} differs from the file",
            family.file_name()
        );
    }
    println!("translations per file: {counts:?}");
}
