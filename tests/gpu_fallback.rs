//! A kernel that cannot run (here: a code-object folder without the code object) follows the
//! fallback policy: a counted, warned CPU fallback with the right bits, or an error under
//! `Deny`. Its own test binary, because it sets `QUANTFORGE_CUDA_KERNEL_DIR` for the process.

use quantforge::core::cpu::{self, CpuPath};
use quantforge::core::OutputDType;
use quantforge::loader::{FallbackPolicy, GgufLoader, LoadError, LoadPath, LoaderOptions};
use quantforge_tests::{data_dir, test_gpu};

#[test]
fn a_missing_code_object_falls_back_visibly_or_fails_under_deny() {
    if std::env::var("QUANTFORGE_GPU_KIND").as_deref() == Ok("hip") {
        eprintln!("SKIPPED: CUDA-specific code-object folder test on HIP");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("QUANTFORGE_CUDA_KERNEL_DIR", empty.path());
    let Some(b) = test_gpu("missing_code_object") else {
        return;
    };
    let path = data_dir().join("tiny-llama-q4_k_m.gguf");

    let loader = GgufLoader::open(&path).unwrap();
    let loaded = loader.load_all(b.as_ref(), OutputDType::F16).unwrap();
    let report = &loaded.report;
    let quantized = loader
        .file()
        .tensors()
        .filter(|t| t.ty.geometry().is_some_and(|g| g.is_quantized()))
        .count();
    assert_eq!(
        report.fallbacks(),
        quantized,
        "every quantized tensor fell back, and was counted"
    );
    for t in &report.tensors {
        if let LoadPath::Fallback(why) = &t.path {
            assert!(
                why.contains(&empty.path().display().to_string()),
                "reason names the missing file: {why}"
            );
            let want = cpu::encode_as(
                &loader
                    .dequantize_to_host(&t.name, CpuPath::Reference)
                    .unwrap(),
                OutputDType::F16,
            );
            let got = loaded.get(&t.name).unwrap().download(b.as_ref()).unwrap();
            assert_eq!(got, want, "{}: fallback result", t.name);
        }
    }

    let strict = GgufLoader::open_with(
        &path,
        LoaderOptions {
            fallback: FallbackPolicy::Deny,
            ..Default::default()
        },
    )
    .unwrap();
    let err = strict
        .load_tensor_to_gpu("token_embd.weight", b.as_ref(), OutputDType::F32)
        .unwrap_err();
    assert!(matches!(err, LoadError::Gpu { .. }), "{err:?}");
    assert!(err.to_string().contains("token_embd.weight"), "{err}");
}
