//! The pipelined loader without a GPU. `TestBackend` keeps "device" memory on the host and runs
//! every operation at once, but it also models the two queues: it numbers the work on each
//! queue, tracks which queue (or the host) has waited for which fence, and records a
//! violation whenever a copy overwrites device bytes that a kernel not yet known to be finished
//! reads, or a kernel reads bytes whose copy is not known to have landed. So these tests fail
//! if the pipeline forgets a fence, besides checking chunking, batching, ring reuse, the bits
//! of every tensor, the fallback policy, the baseline strategy and the multi-device placement.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use quant_core::cpu::{self, CpuPath};
use quant_core::{registry, OutputDType};
use quant_gpu::{Backend, DeviceKind, Queue, TensorDType};
use quant_loader::{
    FallbackPolicy, GgufLoader, LoadAs, LoadError, LoadPath, LoaderOptions, PipelineOptions,
    Placement, Progress, Region, Strategy, Target,
};

mod common;
use common::TestBackend;

use quant_float as _;
use quant_q4_0 as _;
use quant_q4k as _;
use quant_q6k as _;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn tiny_ring() -> PipelineOptions {
    PipelineOptions {
        strategy: Strategy::Pipelined,
        ring_slots: 2,
        slot_bytes: 4096,
        readers: 3,
        direct_reads: false,
    }
}

fn open_mapped(path: &std::path::Path) -> GgufLoader {
    let opts = LoaderOptions {
        mmap: true,
        fallback: FallbackPolicy::Allow,
    };
    GgufLoader::open_with(path, opts).unwrap()
}

fn reference(loader: &GgufLoader, name: &str, dtype: OutputDType) -> Vec<u8> {
    cpu::encode_as(
        &loader.dequantize_to_host(name, CpuPath::Reference).unwrap(),
        dtype,
    )
}

#[test]
fn a_ring_of_two_tiny_slots_loads_every_tensor_bit_exactly() {
    for file in [
        "tiny-llama-q4_k_m.gguf",
        "tiny-llama-q4_0.gguf",
        "tiny-llama-q6_k.gguf",
    ] {
        for dtype in OutputDType::ALL {
            let loader = GgufLoader::open(data(file)).unwrap();
            let b = TestBackend::new(0);
            let mut bytes = 0u64;
            let mut rows = 0usize;
            let loaded = loader
                .load_with(&b, dtype.into(), &tiny_ring(), &mut |p| match p {
                    Progress::Bytes(n) => bytes += n,
                    Progress::Tensor(_) => rows += 1,
                })
                .unwrap();
            let report = &loaded.report;
            let v = b.violations();
            assert!(v.is_empty(), "{file} {dtype}: {:?}", &v[..v.len().min(3)]);
            // Each reader issues its copies and kernels on a lane of its own.
            let used = b.model.lock().unwrap().used.clone();
            assert!(
                !used.is_empty() && used.iter().all(|q| matches!(q, Queue::Lane(_))),
                "{used:?}"
            );
            assert_eq!(report.tensors.len(), loader.file().tensor_count());
            assert_eq!(rows, report.tensors.len());
            assert_eq!(report.fallbacks(), 0);
            let mut quantized_bytes = 0;
            let mut largest = 0;
            for (row, t) in report.tensors.iter().zip(loader.file().tensors()) {
                assert_eq!(row.name, t.name, "rows in file order");
                let want_path = if t.ty.geometry().is_some_and(|g| g.is_quantized()) {
                    quantized_bytes += t.n_bytes;
                    largest = largest.max(t.n_bytes);
                    LoadPath::Kernel
                } else {
                    LoadPath::HostConvert
                };
                assert_eq!(row.path, want_path, "{}", t.name);
                assert_eq!(row.dtype, TensorDType::Values(dtype));
                let dt = loaded.get(&t.name).expect("returned");
                assert_eq!(
                    dt.download(&b).unwrap(),
                    reference(&loader, &t.name, dtype),
                    "{file} {dtype} {}",
                    t.name
                );
            }
            assert!(largest > 4096, "the file has tensors larger than a slot");
            // Every tensor's file bytes go through the ring, float ones (converted by the
            // reader) included.
            let file_bytes: u64 = loader.file().tensors().map(|t| t.n_bytes).sum();
            assert!(quantized_bytes < file_bytes);
            assert_eq!(bytes, file_bytes, "progress counts every queued byte");
            // The ring is two host slots no larger than asked, however large the model.
            let allocs = b.host_allocs.lock().unwrap().clone();
            assert!(!allocs.is_empty() && allocs.len() <= 2, "{allocs:?}");
            assert!(allocs.iter().all(|&n| n <= 4096), "{allocs:?}");
            // Each kernel the model needs was prepared once, beside the first reads.
            let mut prepared = b.prepared.lock().unwrap().clone();
            prepared.sort_unstable();
            let mut want: Vec<&str> = Vec::new();
            for r in report.tensors.iter().filter(|r| r.path == LoadPath::Kernel) {
                let name = quant_core::lookup(r.ty).unwrap().kernel().unwrap().format;
                if !want.contains(&name) {
                    want.push(name);
                }
            }
            want.sort_unstable();
            assert_eq!(prepared, want);
            // Large tensors were split into many launches.
            assert!(
                b.launches.load(Ordering::SeqCst) as u64 > quantized_bytes / 4096,
                "chunked"
            );
        }
    }
}

#[test]
fn many_readers_finishing_in_any_order_give_the_same_bits() {
    let opts = PipelineOptions {
        strategy: Strategy::Pipelined,
        ring_slots: 8,
        slot_bytes: 2048,
        readers: 8,
        direct_reads: false,
    };
    for round in 0..4 {
        let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
        let b = TestBackend::new(0);
        let loaded = loader
            .load_with(&b, OutputDType::F16.into(), &opts, &mut |_| {})
            .unwrap();
        let v = b.violations();
        assert!(v.is_empty(), "round {round}: {:?}", &v[..v.len().min(3)]);
        assert!(b.host_allocs.lock().unwrap().len() <= 8);
        for t in loader.file().tensors() {
            let dt = loaded.get(&t.name).unwrap();
            assert_eq!(
                dt.download(&b).unwrap(),
                reference(&loader, &t.name, OutputDType::F16),
                "round {round}: {}",
                t.name
            );
        }
    }
}

#[test]
fn the_checker_catches_a_copy_over_a_slot_a_kernel_still_reads() {
    // A copy on one queue and a kernel on another, without fences, then with them; then the
    // same on one lane, which needs none.
    let b = TestBackend::new(0);
    let format = registry()
        .iter()
        .find(|f| f.name() == "Q4_K" || f.name() == "q4_k")
        .or_else(|| registry().iter().find(|f| f.kernel().is_some()))
        .unwrap();
    let (g, kernel) = (format.geometry(), format.kernel().unwrap());
    let mut host = b.alloc_host(g.block_bytes).unwrap();
    let mut slot = b.alloc(g.block_bytes).unwrap();
    let mut out = b.alloc(g.block_elems * 4).unwrap();
    let copy = |q: Queue, host: &mut quant_gpu::HostBuffer, slot: &mut quant_gpu::Buffer| {
        b.upload_async(q, host, 0..g.block_bytes, slot, 0).unwrap()
    };
    let kernel_on = |q: Queue, slot: &quant_gpu::Buffer, out: &mut quant_gpu::Buffer| {
        b.dequantize_at(q, kernel, slot, 0, 1, out, 0, OutputDType::F32)
            .unwrap()
    };
    copy(Queue::Copy, &mut host, &mut slot);
    // Kernel without waiting for the copy: caught.
    kernel_on(Queue::Compute, &slot, &mut out);
    assert_eq!(b.violations().len(), 1, "{:?}", b.violations());
    // Next copy into the slot without waiting for the kernel: caught.
    copy(Queue::Copy, &mut host, &mut slot);
    assert_eq!(b.violations().len(), 2, "{:?}", b.violations());
    // With the fences, nothing more.
    let k = b.record(Queue::Compute).unwrap();
    b.wait_fence(Queue::Copy, &k).unwrap();
    copy(Queue::Copy, &mut host, &mut slot);
    let c = b.record(Queue::Copy).unwrap();
    b.wait_fence(Queue::Compute, &c).unwrap();
    kernel_on(Queue::Compute, &slot, &mut out);
    assert_eq!(b.violations().len(), 2, "{:?}", b.violations());
    // On one lane everything is in order: no fence is needed.
    b.synchronize().unwrap();
    copy(Queue::Lane(5), &mut host, &mut slot);
    kernel_on(Queue::Lane(5), &slot, &mut out);
    copy(Queue::Lane(5), &mut host, &mut slot);
    assert_eq!(b.violations().len(), 2, "{:?}", b.violations());
    // A kernel of another lane reading it is caught (against both of lane 5's copies).
    kernel_on(Queue::Lane(6), &slot, &mut out);
    assert_eq!(b.violations().len(), 4, "{:?}", b.violations());
}

#[test]
fn native_keeps_the_blocks_and_says_so() {
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let b = TestBackend::new(0);
    let loaded = loader
        .load_with(&b, LoadAs::Native, &tiny_ring(), &mut |_| {})
        .unwrap();
    let report = &loaded.report;
    assert_eq!(b.violations(), Vec::<String>::new());
    assert_eq!(b.launches.load(Ordering::SeqCst), 0, "no kernel runs");
    for (row, t) in report.tensors.iter().zip(loader.file().tensors()) {
        assert_eq!(row.path, LoadPath::Native);
        assert_eq!(row.dtype, TensorDType::Native(t.ty));
        assert_eq!(row.bytes_uploaded, t.n_bytes);
        let dt = loaded.get(&t.name).unwrap();
        assert_eq!(dt.dtype, TensorDType::Native(t.ty));
        assert_eq!(dt.bytes(), t.n_bytes);
        assert_eq!(
            dt.download(&b).unwrap(),
            *loader.file().tensor_data(&t).unwrap(),
            "{}",
            t.name
        );
    }
    // The serial path gives the same.
    let serial = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let t = &serial.file().tensor_at(1).unwrap();
    let dt = serial
        .load_tensor_to_gpu(&t.name, &b, LoadAs::Native)
        .unwrap();
    assert_eq!(
        dt.download(&b).unwrap(),
        *serial.file().tensor_data(t).unwrap()
    );
}

#[test]
fn ordinary_reads_give_the_same_bits_as_the_mapping() {
    let path = data("tiny-llama-q4_0.gguf");
    let mapped = open_mapped(&path);
    let read = GgufLoader::open_with(
        &path,
        LoaderOptions {
            mmap: false,
            fallback: FallbackPolicy::Deny,
        },
    )
    .unwrap();
    assert!(!read.file().is_mapped());
    // The same mapped file again, filling the ring with positioned reads.
    let direct = open_mapped(&path);
    let direct_opts = PipelineOptions {
        direct_reads: true,
        ..tiny_ring()
    };
    let (b1, b2, b3) = (
        TestBackend::new(0),
        TestBackend::new(0),
        TestBackend::new(0),
    );
    let f16 = OutputDType::F16.into();
    let a = mapped.load_with(&b1, f16, &tiny_ring(), &mut |_| {});
    let c = read.load_with(&b2, f16, &tiny_ring(), &mut |_| {});
    let d = direct.load_with(&b3, f16, &direct_opts, &mut |_| {});
    let (a, c, d) = (a.unwrap(), c.unwrap(), d.unwrap());
    for t in mapped.file().tensors() {
        let want = a.get(&t.name).unwrap().download(&b1).unwrap();
        let c = c.get(&t.name).unwrap();
        assert_eq!(want, c.download(&b2).unwrap(), "{}", t.name);
        let d = d.get(&t.name).unwrap();
        assert_eq!(want, d.download(&b3).unwrap(), "{}", t.name);
    }
}

/// Unmapped, the loader holds none of the file, and readers fill the ring through
/// `GgufFile::read_tensor_at`; a file truncated after opening gives an error naming the file and
/// a tensor, not a crash, with and without `direct_reads`.
#[test]
fn an_unmapped_file_truncated_after_opening_is_an_error_in_the_pipeline() {
    let dir = std::env::temp_dir().join(format!("qf-pipeline-unmapped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shrinks.gguf");
    for direct_reads in [false, true] {
        std::fs::copy(data("tiny-llama-q4_0.gguf"), &path).unwrap();
        let loader = GgufLoader::open_with(
            &path,
            LoaderOptions {
                mmap: false,
                fallback: FallbackPolicy::Deny,
            },
        )
        .unwrap();
        // Of the file it holds the header's tensor infos alone.
        assert!(loader.file().resident_bytes() < loader.file().data_offset());
        let opts = PipelineOptions {
            direct_reads,
            ..tiny_ring()
        };
        let b = TestBackend::new(0);
        // Whole, it loads.
        loader
            .load_with(&b, OutputDType::F16.into(), &opts, &mut |_| {})
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(loader.file().data_offset() + 64)
            .unwrap();
        let err = loader
            .load_with(&b, OutputDType::F16.into(), &opts, &mut |_| {})
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("shrinks.gguf"), "{msg}");
        assert!(
            loader
                .file()
                .tensors()
                .any(|t| msg.contains(&format!("`{}`", t.name))),
            "{msg}"
        );
        assert!(msg.contains("shorter than when it was opened"), "{msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_kernel_in_the_pipeline_falls_back_or_fails_under_deny() {
    let mut b = TestBackend::new(0);
    b.launch_fails = true;
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let loaded = loader
        .load_with(&b, OutputDType::Bf16.into(), &tiny_ring(), &mut |_| {})
        .unwrap();
    let report = &loaded.report;
    let quantized = loader
        .file()
        .tensors()
        .filter(|t| t.ty.geometry().is_some_and(|g| g.is_quantized()))
        .count();
    assert_eq!(report.fallbacks(), quantized);
    for t in &report.tensors {
        if let LoadPath::Fallback(why) = &t.path {
            assert!(why.contains("test device refuses"), "{why}");
            let dt = loaded.get(&t.name).unwrap();
            assert_eq!(
                dt.download(&b).unwrap(),
                reference(&loader, &t.name, OutputDType::Bf16)
            );
        }
    }
    let strict = GgufLoader::open_with(
        data("tiny-llama-q4_k_m.gguf"),
        LoaderOptions {
            mmap: true,
            fallback: FallbackPolicy::Deny,
        },
    )
    .unwrap();
    let err = strict
        .load_with(&b, OutputDType::Bf16.into(), &tiny_ring(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, LoadError::Gpu { .. }), "{err:?}");
    assert!(err.to_string().contains("test device refuses"), "{err}");
}

#[test]
fn an_output_that_does_not_fit_stops_the_pipeline_with_an_error_naming_it() {
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let mut b = TestBackend::new(0);
    // Room for the ring and the small outputs, not for the largest f32 output.
    let largest = loader
        .file()
        .tensors()
        .max_by_key(|t| t.n_elements)
        .unwrap()
        .clone();
    b.alloc_limit = largest.n_elements as usize * 4 - 1;
    for readers in [1, 4] {
        let opts = PipelineOptions {
            readers,
            ring_slots: 4,
            ..tiny_ring()
        };
        let err = loader
            .load_with(&b, OutputDType::F32.into(), &opts, &mut |_| {})
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LoadError::Gpu { .. }), "{err:?}");
        let too_big = loader
            .file()
            .tensors()
            .filter(|t| t.n_elements == largest.n_elements)
            .any(|t| msg.contains(&format!("'{}'", t.name)));
        assert!(too_big && msg.contains("cannot allocate"), "{msg}");
    }
}

/// A reader that cannot allocate its ring stops the load with an error (every reader reserves
/// its slots before the allocator thread, which waits for the rings, makes any output): no
/// thread is left waiting.
#[test]
fn a_ring_that_cannot_be_allocated_stops_the_load_without_a_hang() {
    let loader = std::sync::Arc::new(GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap());
    let (done, wait) = std::sync::mpsc::channel();
    let l = loader.clone();
    // A thread of its own, so that a hang fails the test instead of hanging it.
    std::thread::spawn(move || {
        let mut b = TestBackend::new(0);
        b.alloc_limit = 16; // under any device slot
        for readers in [1, 3] {
            let opts = PipelineOptions {
                readers,
                ring_slots: 6,
                ..tiny_ring()
            };
            let r = l.load_with(&b, OutputDType::F16.into(), &opts, &mut |_| {});
            done.send(r.map(drop)).unwrap();
        }
    });
    for _ in 0..2 {
        let r = wait.recv_timeout(std::time::Duration::from_secs(20));
        let err = r.expect("the load hung").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LoadError::Gpu { .. }), "{err:?}");
        assert!(
            msg.contains("tiny-llama-q4_k_m.gguf") && msg.contains("cannot allocate"),
            "{msg}"
        );
    }
}

#[test]
fn a_slot_smaller_than_a_block_is_a_clear_error() {
    let loader = GgufLoader::open(data("tiny-llama-q6_k.gguf")).unwrap();
    let b = TestBackend::new(0);
    let opts = PipelineOptions {
        slot_bytes: 100,
        ..tiny_ring()
    };
    let err = loader
        .load_with(&b, OutputDType::F32.into(), &opts, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, LoadError::Options { .. }), "{err:?}");
    assert!(err.to_string().contains("100 bytes"), "{err}");
}

#[test]
fn the_cpu_dequant_baseline_uploads_pageable_values_with_the_same_bits() {
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let b = TestBackend::new(0);
    let opts = PipelineOptions {
        strategy: Strategy::CpuDequant,
        ..tiny_ring()
    };
    let loaded = loader
        .load_with(&b, OutputDType::F32.into(), &opts, &mut |_| {})
        .unwrap();
    let report = &loaded.report;
    assert_eq!(
        b.pageable_uploads.load(Ordering::SeqCst),
        loader.file().tensor_count()
    );
    assert_eq!(b.launches.load(Ordering::SeqCst), 0);
    for (row, t) in report.tensors.iter().zip(loader.file().tensors()) {
        assert_eq!(row.path, LoadPath::CpuDequant);
        assert_eq!(row.bytes_uploaded, t.n_elements * 4, "f32 values go up");
        let dt = loaded.get(&t.name).unwrap();
        assert_eq!(
            dt.download(&b).unwrap(),
            reference(&loader, &t.name, OutputDType::F32)
        );
    }
    let err = loader
        .load_with(&b, LoadAs::Native, &opts, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, LoadError::Options { .. }), "{err}");
}

#[test]
fn a_placement_over_two_devices_loads_each_share_on_its_device() {
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let (b0, b1) = (TestBackend::new(0), TestBackend::new(1));
    let mem = [b0.mem_info().unwrap(), b1.mem_info().unwrap()];
    let placement = Placement::plan(loader.file(), &mem, OutputDType::F16.into()).unwrap();
    // The tiny model has one layer; with equal devices it goes to the second, beside the
    // embeddings and output on the first.
    assert!(
        !placement.devices[0].tensors.is_empty() && placement.devices[1].layers == [0],
        "{placement:?}"
    );
    let seen = Mutex::new(0u64);
    let reports = loader
        .load_placed(
            &[&b0, &b1],
            &placement,
            OutputDType::F16.into(),
            &tiny_ring(),
            &|p| {
                if let Progress::Bytes(n) = p {
                    *seen.lock().unwrap() += n;
                }
            },
        )
        .unwrap();
    assert_eq!(reports.len(), 2);
    assert!(b0.violations().is_empty() && b1.violations().is_empty());
    let file_bytes: u64 = loader.file().tensors().map(|t| t.n_bytes).sum();
    assert_eq!(*seen.lock().unwrap(), file_bytes);
    for (d, (b, r)) in [&b0, &b1].into_iter().zip(&reports).enumerate() {
        assert_eq!(r.report.tensors.len(), placement.devices[d].tensors.len());
        for &i in &placement.devices[d].tensors {
            let t = &loader.file().tensor_at(i).unwrap();
            let dt = r.get(&t.name).expect("on its device");
            assert_eq!(dt.buffer.device(), (DeviceKind::Cuda, d));
            assert_eq!(
                dt.download(b).unwrap(),
                reference(&loader, &t.name, OutputDType::F16)
            );
        }
    }
    let err = loader
        .load_placed(
            &[&b0],
            &placement,
            OutputDType::F16.into(),
            &tiny_ring(),
            &|_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("1 backends"), "{err}");
}

#[test]
fn the_bare_copy_moves_every_byte_through_the_ring_and_makes_nothing() {
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let b = TestBackend::new(0);
    let mut bytes = 0u64;
    let report = loader
        .bare_copy(&b, &tiny_ring(), &mut |p| {
            if let Progress::Bytes(n) = p {
                bytes += n;
            }
        })
        .unwrap();
    assert_eq!(b.violations(), Vec::<String>::new());
    assert_eq!(b.launches.load(Ordering::SeqCst), 0, "no kernel runs");
    let file_bytes: u64 = loader.file().tensors().map(|t| t.n_bytes).sum();
    assert_eq!((bytes, report.bytes_uploaded()), (file_bytes, file_bytes));
    assert_eq!(report.tensors.len(), loader.file().tensor_count());
    assert!(report.tensors.iter().all(|r| r.path == LoadPath::BareCopy));
    // The ring's host slots, and no outputs: every device allocation is a slot.
    assert!(b.host_allocs.lock().unwrap().len() <= 2);
}

#[test]
fn a_cancelled_load_stops_with_an_error_naming_the_file() {
    let loader = GgufLoader::open(data("tiny-llama-q4_k_m.gguf")).unwrap();
    let b = TestBackend::new(0);
    let total: u64 = loader.file().tensors().map(|t| t.n_bytes).sum();
    let f16 = OutputDType::F16.into();
    for strategy in [Strategy::Pipelined, Strategy::Serial] {
        let opts = PipelineOptions {
            strategy,
            ..tiny_ring()
        };
        // A flag set before the load: nothing is read.
        let cancel = std::sync::atomic::AtomicBool::new(true);
        let mut seen = 0;
        let mut progress = |p: &Progress| {
            if let Progress::Bytes(n) = p {
                seen += n;
            }
        };
        let err = loader
            .load_with_cancel(&b, f16, &opts, &mut progress, &cancel)
            .unwrap_err();
        assert!(matches!(err, LoadError::Interrupted { .. }), "{err:?}");
        assert!(err.to_string().contains("tiny-llama-q4_k_m.gguf"), "{err}");
        assert_eq!(seen, 0, "{strategy:?}");
        // Unset, the same call loads everything.
        cancel.store(false, Ordering::Relaxed);
        let loaded = loader.load_with_cancel(&b, f16, &opts, &mut |_| {}, &cancel);
        assert_eq!(loaded.unwrap().tensors.len(), loader.file().tensor_count());
    }
    // Set from the progress callback after the first tensor, as the Python binding does on
    // Ctrl-C: a serial load stops before the next one. (A pipelined load on this test
    // device may finish its few batches before the callback runs.)
    let opts = PipelineOptions {
        strategy: Strategy::Serial,
        ..tiny_ring()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut seen = 0;
    let mut progress = |p: &Progress| {
        if let Progress::Bytes(n) = p {
            seen += n;
            cancel.store(true, Ordering::Relaxed);
        }
    };
    let err = loader
        .load_with_cancel(&b, f16, &opts, &mut progress, &cancel)
        .unwrap_err();
    assert!(matches!(err, LoadError::Interrupted { .. }), "{err:?}");
    assert!(seen < total, "read {seen} of {total} bytes");
}

/// Tensor-parallel ranks' regions: rows of tensors (a colwise split) and block-aligned columns
/// of every row (a rowwise split, strided in the file) load through the ring as those values
/// of the whole tensors, reading only their bytes; a region outside its tensor, or one that
/// cuts blocks on a device, is refused naming the file and the tensor.
#[test]
fn regions_of_tensors_load_as_those_values_of_the_whole_tensors() {
    let loader = GgufLoader::open(data("tiny-llama-q4_0.gguf")).unwrap();
    let dtype = OutputDType::F16;
    let (mut regions, mut want, mut bytes_want) = (Vec::new(), Vec::new(), 0u64);
    let mut strided = 0;
    for t in loader.file().tensors().filter(|t| t.dims.len() == 2) {
        let (ne0, rows) = (t.dims[0], t.dims[1]);
        let be = t.ty.geometry().unwrap().block_elems as u64;
        let whole = reference(&loader, &t.name, dtype);
        let value = |r: u64, c: u64| {
            let at = (r * ne0 + c) as usize * dtype.size();
            whole[at..at + dtype.size()].to_vec()
        };
        let (half, cols) = (rows / 2, (ne0 / be / 2 * be)..ne0);
        for region in [
            Region {
                rows: 1..half.max(2),
                cols: 0..ne0,
            },
            Region {
                rows: 0..rows,
                cols: cols.clone(),
            },
        ] {
            let mut v = Vec::new();
            for r in region.rows.clone() {
                region.cols.clone().for_each(|c| v.extend(value(r, c)));
            }
            let spans = loader
                .plan(&t.name, dtype.into(), Some(&region), Target::Device)
                .unwrap()
                .spans;
            strided += usize::from(spans.count > 1 && spans.stride > spans.len);
            bytes_want += spans.total();
            want.push(v);
            regions.push((t.name.clone(), region));
        }
    }
    assert!(
        regions.len() >= 10 && strided >= 2,
        "{strided} strided regions"
    );
    let b = TestBackend::new(0);
    let mut bytes = 0u64;
    let loaded = loader
        .load_regions(&b, &regions, dtype.into(), &tiny_ring(), &mut |p| {
            if let Progress::Bytes(n) = p {
                bytes += n
            }
        })
        .unwrap();
    assert!(b.violations().is_empty());
    assert_eq!(bytes, bytes_want, "only the regions' bytes");
    for (k, ((name, region), t)) in regions.iter().zip(&loaded.tensors).enumerate() {
        assert_eq!(t.download(&b).unwrap(), want[k], "{name} {region:?}");
        let (rows, cols) = (
            region.rows.end - region.rows.start,
            region.cols.end - region.cols.start,
        );
        assert_eq!(t.shape, [cols, rows], "{name} {region:?}");
    }
    let name = regions[0].0.clone();
    let refused = [
        Region {
            rows: 0..1_000_000,
            cols: 0..32,
        },
        Region {
            rows: 0..1,
            cols: 1..32,
        },
    ];
    for region in refused {
        let Err(err) = loader.load_regions(
            &b,
            &[(name.clone(), region)],
            dtype.into(),
            &tiny_ring(),
            &mut |_| {},
        ) else {
            panic!("a region outside its tensor, or cutting blocks, was loaded");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("tiny-llama-q4_0.gguf") && msg.contains(&name),
            "{msg}"
        );
    }
}
