//! Device faults and concurrency on a real GPU (`QUANTFORGE_GPU_TESTS=1`; skipped visibly
//! otherwise):
//! * a load that cannot allocate its output fails with an error naming the tensor and the bytes
//!   wanted and free, and leaks nothing: as much device memory is free afterwards as before;
//! * 16 threads loading different tensors of one file onto one device get the bits of a serial
//!   load.

use std::sync::Mutex;

use quantforge::core::{GgmlType, OutputDType};
use quantforge::loader::{GgufLoader, LoadError};
use quantforge_tests::{test_gpu, write_random_model};

/// The tests of this file share one device, and the first measures its free memory: each holds
/// this lock, so that the other's allocations cannot move the figures (the test harness runs
/// tests on parallel threads; an H200 run once failed the leak check that way).
static DEVICE: Mutex<()> = Mutex::new(());

#[test]
fn a_failed_allocation_names_the_tensor_and_frees_what_the_load_took() {
    let _device = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = test_gpu("failed_allocation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    // 64 MiB of Q4_K blocks expand to 455 MiB of f32.
    let rows = (64u64 << 20) / 144;
    write_random_model(&path, &[("big.weight", GgmlType::Q4_K, 256, rows)]);
    let loader = GgufLoader::open(&path).unwrap();
    let src_bytes = loader.file().tensor_at(0).unwrap().n_bytes;

    // Warm up what a backend sets up once and keeps (pinned staging and the driver's mappings
    // of it, the streams' first work), so that the figures below measure only the load.
    {
        let data = loader
            .file()
            .tensor_data(&loader.file().tensor_at(0).unwrap())
            .unwrap();
        let mut warm = b.alloc(data.len()).unwrap();
        b.upload(&data, &mut warm).unwrap();
        b.synchronize().unwrap();
    }

    let start = b.mem_info().unwrap();
    // Leave room for the quantized upload but not for the output.
    let hog_bytes = start.free - src_bytes - (128 << 20);
    let hog = b.alloc(hog_bytes as usize).unwrap();
    let before_load = b.mem_info().unwrap();

    let err = loader
        .load_tensor_to_gpu("big.weight", b.as_ref(), OutputDType::F32)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Gpu { .. }), "{err:?}");
    assert!(
        msg.contains("big.weight") && msg.contains("big.gguf"),
        "{msg}"
    );
    assert!(
        msg.contains("cannot allocate") && msg.contains(&(rows * 256 * 4).to_string()),
        "{msg}"
    );

    let after_load = b.mem_info().unwrap();
    // At least as much free as before (to within the driver's 2 MiB page, as below): the failed
    // load freed its upload buffer. The driver may also trim its own reserves after an
    // out-of-memory error, leaving a little more.
    assert!(
        after_load.free + (2 << 20) >= before_load.free,
        "the failed load freed its upload buffer: {} free before, {} after",
        before_load.free,
        after_load.free
    );
    drop(hog);
    let end = b.mem_info().unwrap();
    eprintln!(
        "free: start {} / with hog {} / after failed load {} / end {}",
        start.free, before_load.free, after_load.free, end.free
    );
    // Nothing leaked: at least as much free at the end as at the start, to within the driver's
    // 2 MiB page. (After an out-of-memory error the driver may trim reserves of its own, so
    // more can be free than at the start: an H200 with driver 580 showed 8 MiB more.)
    assert!(
        end.free + (2 << 20) >= start.free,
        "device memory returned to its starting value: {} free at the start, {} at the end",
        start.free,
        end.free
    );
}

#[test]
fn sixteen_threads_get_the_bits_of_a_serial_load() {
    let _device = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = test_gpu("sixteen_threads") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.gguf");
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F16,
        GgmlType::BF16,
    ];
    let names: Vec<String> = (0..40).map(|i| format!("blk.{i}.weight")).collect();
    let spec: Vec<(&str, GgmlType, u64, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), types[i % types.len()], 1024, 64 + i as u64))
        .collect();
    write_random_model(&path, &spec);

    for dtype in OutputDType::ALL {
        let serial = GgufLoader::open(&path).unwrap();
        let want: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                serial
                    .load_tensor_to_gpu(n, b.as_ref(), dtype)
                    .unwrap()
                    .download(b.as_ref())
                    .unwrap()
            })
            .collect();
        drop(serial);

        let shared = GgufLoader::open(&path).unwrap();
        let b = b.as_ref();
        std::thread::scope(|s| {
            for i in 0..16 {
                let (shared, names, want) = (&shared, &names, &want);
                s.spawn(move || {
                    for j in (i..names.len()).step_by(16) {
                        let got = shared
                            .load_tensor_to_gpu(&names[j], b, dtype)
                            .unwrap()
                            .download(b)
                            .unwrap();
                        assert!(
                            got == want[j],
                            "{} {dtype}: threaded load differs",
                            names[j]
                        );
                    }
                });
            }
        });
    }
}
