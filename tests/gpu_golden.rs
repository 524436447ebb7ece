//! Golden files on a GPU: every supported tensor loaded through `GgufLoader` onto the device
//! equals the CPU reference (which `golden.rs` holds against ggml's manifests) in f32, bit for bit
//! with NaN for NaN, and equals the rounded reference in f16 and bf16.
//!
//! Runs only with `QUANTFORGE_GPU_TESTS=1`; then a missing GPU is a failure. Without the variable
//! it prints a visible SKIPPED line.

use quantforge::core::cpu::{self, CpuPath};
use quantforge::core::OutputDType;
use quantforge::loader::{FallbackPolicy, GgufLoader, LoadPath, LoaderOptions};
use quantforge_tests::{first_gpu_mismatch, golden_files, test_gpu};

fn to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn golden_tensors_on_the_gpu_equal_the_cpu_reference() {
    let Some(backend) = test_gpu("golden_tensors") else {
        return;
    };
    let opts = LoaderOptions {
        fallback: FallbackPolicy::Deny,
        ..Default::default()
    };
    let mut kernels = 0;
    for (path, expected) in golden_files() {
        let loader = GgufLoader::open_with(&path, opts).expect("golden file opens");
        for e in &expected {
            let t = loader.tensor(&e.name).unwrap();
            if loader.format_of(&t).is_err() {
                continue;
            }
            let reference = loader
                .dequantize_to_host(&e.name, CpuPath::Reference)
                .unwrap();
            for dtype in OutputDType::ALL {
                let (dt, load) = loader
                    .load_tensor(&e.name, backend.as_ref(), dtype)
                    .unwrap_or_else(|err| panic!("{}: {}: {err}", path.display(), e.name));
                assert!(
                    !matches!(load.path, LoadPath::Fallback(_)),
                    "{}: fell back",
                    e.name
                );
                kernels += usize::from(load.path == LoadPath::Kernel);
                let got = dt.download(backend.as_ref()).unwrap();
                match dtype {
                    OutputDType::F32 => {
                        if let Some(i) = first_gpu_mismatch(&reference, &to_f32(&got)) {
                            panic!("{}: {} ({}) differs at {i}", path.display(), e.name, e.ty);
                        }
                    }
                    _ => {
                        let want = cpu::encode_as(&reference, dtype);
                        let nan = |b: &[u8]| match dtype {
                            OutputDType::F16 => half::f16::from_le_bytes([b[0], b[1]]).is_nan(),
                            _ => half::bf16::from_le_bytes([b[0], b[1]]).is_nan(),
                        };
                        for (i, (w, g)) in want.chunks_exact(2).zip(got.chunks_exact(2)).enumerate()
                        {
                            assert!(
                                w == g || (nan(w) && nan(g)),
                                "{}: {} ({}) {dtype} differs at {i}",
                                path.display(),
                                e.name,
                                e.ty
                            );
                        }
                        assert_eq!(want.len(), got.len());
                    }
                }
            }
        }
    }
    assert!(kernels > 0, "no tensor ran a device kernel");
    eprintln!("{kernels} tensor loads ran a device kernel, all bit-exact");
}
