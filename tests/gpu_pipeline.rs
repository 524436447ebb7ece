//! The pipelined loader on a GPU: tensors split over many ring slots, small ones batched, a ring
//! of two slots reused many times, and every result equal to the serial tensor-by-tensor load
//! (which `gpu_golden.rs` holds against the CPU reference) byte for byte. Also `--dtype native`,
//! the cpu-dequant baseline, and the pinned-buffer primitives directly.
//!
//! Runs only with `QUANTFORGE_GPU_TESTS=1`; without it, prints a visible SKIPPED line.

use quantforge::core::cpu::CpuPath;
use quantforge::core::{GgmlType, OutputDType};
use quantforge::gpu::{Queue, TensorDType};
use quantforge::loader::{
    FallbackPolicy, GgufLoader, LoadAs, LoadPath, LoaderOptions, PipelineOptions, Strategy,
};
use quantforge_tests::{data_dir, first_gpu_mismatch, test_gpu, write_random_model};

fn deny() -> LoaderOptions {
    LoaderOptions {
        fallback: FallbackPolicy::Deny,
        ..Default::default()
    }
}

fn ring(slot_bytes: usize) -> PipelineOptions {
    PipelineOptions {
        strategy: Strategy::Pipelined,
        ring_slots: 2,
        slot_bytes,
        readers: 4,
        direct_reads: false,
    }
}

/// A model with tensors much larger than the test ring and many small ones.
fn random_model(dir: &std::path::Path) -> std::path::PathBuf {
    let t = |n: &str| GgmlType::from_name(n).unwrap();
    let path = dir.join("pipeline.gguf");
    let mut tensors = vec![
        ("token_embd.weight", t("Q4_K"), 4096, 96),
        ("blk.0.attn_q.weight", t("Q4_0"), 4096, 64),
        ("blk.0.ffn_down.weight", t("Q6_K"), 4096, 80),
    ];
    let names: Vec<String> = (0..40).map(|i| format!("blk.1.small{i}.weight")).collect();
    for (i, n) in names.iter().enumerate() {
        let ty = ["Q4_K", "Q6_K", "Q4_0"][i % 3];
        tensors.push((n.as_str(), t(ty), 256, 1 + i as u64 % 3));
    }
    tensors.push(("output.weight", t("Q6_K"), 4096, 33));
    write_random_model(&path, &tensors);
    path
}

#[test]
fn pipelined_loads_equal_serial_loads_byte_for_byte() {
    let Some(b) = test_gpu("pipelined_vs_serial") else {
        return;
    };
    assert!(b.async_primitives(), "this backend should pipeline");
    let dir = tempfile::tempdir().unwrap();
    let files = [
        random_model(dir.path()),
        data_dir().join("tiny-llama-q4_k_m.gguf"),
        data_dir().join("tiny-llama-q4_0.gguf"),
    ];
    for path in &files {
        for dtype in OutputDType::ALL {
            let serial = GgufLoader::open_with(path, deny()).unwrap();
            let piped = GgufLoader::open_with(path, deny()).unwrap();
            let serial_opts = PipelineOptions {
                strategy: Strategy::Serial,
                ..ring(1 << 18)
            };
            let one_by_one = serial
                .load_with(b.as_ref(), dtype.into(), &serial_opts, &mut |_| {})
                .unwrap();
            let loaded = piped
                .load_with(b.as_ref(), dtype.into(), &ring(1 << 18), &mut |_| {})
                .unwrap();
            let report = &loaded.report;
            assert_eq!(report.fallbacks(), 0);
            for (row, t) in report.tensors.iter().zip(piped.file().tensors()) {
                let a = one_by_one.get(&t.name).unwrap();
                let p = loaded.get(&t.name).unwrap();
                assert_eq!(
                    a.download(b.as_ref()).unwrap(),
                    p.download(b.as_ref()).unwrap(),
                    "{}: {} ({}) as {dtype} via {}",
                    path.display(),
                    t.name,
                    t.ty,
                    row.path.label()
                );
            }
        }
    }
}

#[test]
fn native_and_the_cpu_dequant_baseline_on_the_gpu() {
    let Some(b) = test_gpu("native_and_cpu_dequant") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = random_model(dir.path());
    let loader = GgufLoader::open_with(&path, deny()).unwrap();
    let loaded = loader
        .load_with(b.as_ref(), LoadAs::Native, &ring(1 << 16), &mut |_| {})
        .unwrap();
    for (row, t) in loaded.report.tensors.iter().zip(loader.file().tensors()) {
        assert_eq!(row.path, LoadPath::Native);
        let dt = loaded.get(&t.name).unwrap();
        assert_eq!(dt.dtype, TensorDType::Native(t.ty));
        assert_eq!(
            dt.download(b.as_ref()).unwrap(),
            *loader.file().tensor_data(&t).unwrap(),
            "{}",
            t.name
        );
    }

    let base = GgufLoader::open_with(&path, deny()).unwrap();
    let opts = PipelineOptions {
        strategy: Strategy::CpuDequant,
        ..PipelineOptions::default()
    };
    let loaded = base
        .load_with(b.as_ref(), OutputDType::F32.into(), &opts, &mut |_| {})
        .unwrap();
    for (row, t) in loaded.report.tensors.iter().zip(base.file().tensors()) {
        assert_eq!(row.path, LoadPath::CpuDequant);
        let got: Vec<f32> = loaded
            .get(&t.name)
            .unwrap()
            .download(b.as_ref())
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let want = base
            .dequantize_to_host(&t.name, CpuPath::Reference)
            .unwrap();
        assert_eq!(first_gpu_mismatch(&want, &got), None, "{}", t.name);
    }
}

#[test]
fn a_pinned_buffer_is_reusable_once_its_copy_has_landed() {
    let Some(b) = test_gpu("pinned_reuse") else {
        return;
    };
    let n = 8 << 20;
    let mut host = b.alloc_host(n).unwrap();
    assert!(host.is_pinned());
    let mut dev = b.alloc(2 * n).unwrap();
    b.fill(&mut dev, 0).unwrap();
    host.as_mut_slice().unwrap().fill(0x11);
    b.upload_async(Queue::Copy, &mut host, 0..n, &mut dev, 0)
        .unwrap();
    // Writing waits for the first copy: the device keeps 0x11 in the first half.
    host.as_mut_slice().unwrap().fill(0x22);
    b.upload_async(Queue::Copy, &mut host, 0..n, &mut dev, n)
        .unwrap();
    let done = b.record(Queue::Copy).unwrap();
    b.wait_fence(Queue::Compute, &done).unwrap();
    let mut out = vec![0u8; 2 * n];
    b.download(&dev, &mut out).unwrap();
    assert!(out[..n].iter().all(|&x| x == 0x11));
    assert!(out[n..].iter().all(|&x| x == 0x22));
    // Offsets past the end are refused, not written.
    assert!(b
        .upload_async(Queue::Copy, &mut host, 0..n, &mut dev, n + 1)
        .is_err());
}
