//! Every tensor of every golden file (written by llama.cpp's quantizer) dequantizes on the CPU to
//! exactly the bits ggml's own dequantizer gave, per the `.sha256` manifests: the reference and
//! the fast path, NaN payloads and signs of zero included. Types no linked format handles are
//! reported as unsupported, by name.

use quantforge::core::cpu::CpuPath;
use quantforge::loader::{GgufLoader, LoadError};
use quantforge_tests::{golden_files, sha256_f32};

const SUPPORTED: [&str; 28] = [
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
    "Q6_K", "Q1_0", "Q2_0", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S",
    "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4",
];

#[test]
fn every_supported_tensor_matches_ggml_bit_for_bit() {
    let mut checked = 0;
    let mut per_type = std::collections::BTreeMap::<String, usize>::new();
    for (path, expected) in golden_files() {
        let loader = GgufLoader::open(&path).expect("golden file opens");
        assert_eq!(
            loader.file().tensor_count(),
            expected.len(),
            "{}",
            path.display()
        );
        for e in &expected {
            let t = loader.tensor(&e.name).expect("tensor in file");
            assert_eq!(t.ty.to_string(), e.ty, "{}: {}", path.display(), e.name);
            assert_eq!(t.n_elements, e.elements, "{}: {}", path.display(), e.name);
            if !SUPPORTED.contains(&e.ty.as_str()) {
                match loader.dequantize_to_host(&e.name, CpuPath::Reference) {
                    Err(LoadError::Unsupported { tensor, ty, .. }) => {
                        assert_eq!(tensor, e.name);
                        assert_eq!(ty.to_string(), e.ty);
                    }
                    other => panic!(
                        "{}: {} should be unsupported, got {other:?}",
                        path.display(),
                        e.name
                    ),
                }
                continue;
            }
            for cpu_path in [CpuPath::Reference, CpuPath::Fast] {
                let v = loader
                    .dequantize_to_host(&e.name, cpu_path)
                    .expect("dequantizes");
                assert_eq!(
                    sha256_f32(&v),
                    e.sha256,
                    "{}: {} ({}) via {cpu_path:?} differs from ggml",
                    path.display(),
                    e.name,
                    e.ty
                );
            }
            *per_type.entry(e.ty.clone()).or_default() += 1;
            checked += 1;
        }
    }
    for ty in SUPPORTED {
        assert!(
            per_type.get(ty).copied().unwrap_or(0) > 0,
            "no golden tensor of type {ty} was checked"
        );
    }
    assert!(checked >= 30, "only {checked} tensors checked");
    eprintln!("bit-exact against ggml: {per_type:?}");
}
