//! The loader's serial path without a GPU: the shared host-memory test backend (tests/common),
//! with its pipeline primitives off, stands in for a device, running each kernel as its format's
//! CPU fast path (or failing on demand), so that caching, reporting, the fallback policy and error
//! context are tested in CI. Real devices are tested in
//! `tests/gpu_golden.rs` and `quant-cuda`'s GPU suite.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use quant_core::cpu::{self, CpuPath};
use quant_core::OutputDType;
use quant_loader::{
    FallbackPolicy, GgufLoader, LoadAs, LoadError, LoadPath, LoaderOptions, TensorCache,
};

mod common;
use common::TestBackend;

// Link the format crates so that their registrations exist in this test binary.
use quant_float as _;
use quant_q4_0 as _;
use quant_q4k as _;
use quant_q6k as _;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Works,
    LaunchFails,
    OutOfMemory,
}

/// The shared host test backend without the pipeline primitives, so that these tests go through
/// the loader's serial path and the trait's default implementations.
fn backend(mode: Mode) -> TestBackend {
    let mut b = TestBackend::new(7);
    b.asynchronous = false;
    b.launch_fails = mode == Mode::LaunchFails;
    if mode == Mode::OutOfMemory {
        b.alloc_limit = 4096;
    }
    b
}

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tiny-llama-q4_k_m.gguf")
}

fn open(policy: FallbackPolicy) -> GgufLoader {
    GgufLoader::open_with(
        model(),
        LoaderOptions {
            mmap: true,
            fallback: policy,
        },
    )
    .unwrap()
}

#[test]
fn load_all_runs_kernels_for_quantized_tensors_and_reports() {
    let loader = open(FallbackPolicy::Deny);
    let b = backend(Mode::Works);
    let loaded = loader.load_all(&b, OutputDType::F16).unwrap();
    let report = &loaded.report;
    assert_eq!(report.tensors.len(), loader.file().tensor_count());
    assert_eq!(loaded.tensors.len(), report.tensors.len());
    assert_eq!(report.fallbacks(), 0);
    for (t, info) in report.tensors.iter().zip(loader.file().tensors()) {
        let quantized = info.ty.geometry().is_some_and(|g| g.is_quantized());
        assert_eq!(
            t.path,
            if quantized {
                LoadPath::Kernel
            } else {
                LoadPath::HostConvert
            },
            "{}",
            t.name
        );
        assert_eq!(t.bytes_produced, info.n_elements * 2);
        if quantized {
            assert_eq!(
                t.bytes_uploaded, info.n_bytes,
                "quantized bytes go up, not f32"
            );
        }
        // The device tensor holds the rounded CPU reference.
        let dt = loaded.get(&t.name).expect("returned");
        let want = cpu::encode_as(
            &loader
                .dequantize_to_host(&t.name, CpuPath::Reference)
                .unwrap(),
            OutputDType::F16,
        );
        assert_eq!(dt.download(&b).unwrap(), want, "{}", t.name);
        assert_eq!(dt.shape, info.dims);
    }
    assert!(b.launches.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_tensor_cache_serves_a_second_load_without_launching() {
    let loader = open(FallbackPolicy::Deny);
    let b = backend(Mode::Works);
    let cache = TensorCache::new();
    let name = "blk.0.attn_q.weight";
    let as_ = LoadAs::Values(OutputDType::F16);
    let load = || loader.load_tensor(name, &b, as_);
    let (first, row) = cache.get_or_load(name, as_, &b, load).unwrap();
    assert_eq!(row.path, LoadPath::Kernel);
    let before = b.launches.load(Ordering::SeqCst);
    let (again, row) = cache.get_or_load(name, as_, &b, load).unwrap();
    assert_eq!((row.path, row.bytes_uploaded), (LoadPath::Cached, 0));
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(b.launches.load(Ordering::SeqCst), before);
    // Taken out, it is the caller's alone, and the next load loads again.
    drop((first, again));
    let taken = cache.take(name, as_, &b).expect("cached");
    assert!(std::sync::Arc::try_unwrap(taken).is_ok(), "the only holder");
    assert!(cache.get(name, as_, &b).is_none());
    let (_, row) = cache.get_or_load(name, as_, &b, load).unwrap();
    assert_eq!(row.path, LoadPath::Kernel);
}

#[test]
fn a_failing_kernel_falls_back_visibly_or_fails_under_deny() {
    let b = backend(Mode::LaunchFails);
    let loader = open(FallbackPolicy::Allow);
    let loaded = loader.load_all(&b, OutputDType::F32).unwrap();
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
            let want = cpu::encode_as(
                &loader
                    .dequantize_to_host(&t.name, CpuPath::Reference)
                    .unwrap(),
                OutputDType::F32,
            );
            assert_eq!(dt.download(&b).unwrap(), want);
        }
    }

    let strict = open(FallbackPolicy::Deny);
    let err = strict
        .load_tensor_to_gpu("token_embd.weight", &b, OutputDType::F32)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Gpu { .. }), "{err:?}");
    assert!(
        msg.contains("token_embd.weight") && msg.contains("tiny-llama-q4_k_m.gguf"),
        "{msg}"
    );
}

#[test]
fn out_of_memory_is_an_error_not_a_fallback() {
    let b = backend(Mode::OutOfMemory);
    let loader = open(FallbackPolicy::Allow);
    let err = loader
        .load_tensor_to_gpu("token_embd.weight", &b, OutputDType::F32)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("token_embd.weight") && msg.contains("cannot allocate"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_and_unsupported_type_name_the_file_and_tensor() {
    let loader = open(FallbackPolicy::Allow);
    let err = loader
        .dequantize_to_host("no.such.tensor", CpuPath::Fast)
        .unwrap_err();
    assert!(err.to_string().contains("no.such.tensor"));
    assert!(err.to_string().contains("tiny-llama-q4_k_m.gguf"));

    // A type no format crate dequantizes (this test links the facade's formats).
    let all = GgufLoader::open(model().with_file_name("all-types.gguf")).unwrap();
    let t = all
        .file()
        .tensors()
        .find(|t| t.ty.to_string() == "IQ4_XS")
        .unwrap();
    let err = all.dequantize_to_host(&t.name, CpuPath::Fast).unwrap_err();
    assert!(matches!(err, LoadError::Unsupported { .. }));
    assert!(
        err.to_string().contains("IQ4_XS") && err.to_string().contains(&t.name),
        "{err}"
    );
}

#[test]
fn a_file_that_changes_size_after_open_is_an_error_not_a_crash() {
    for mmap in [true, false] {
        let dir = std::env::temp_dir().join(format!("qf-loader-{}-{mmap}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shrinking.gguf");
        std::fs::copy(model(), &path).unwrap();
        let loader = GgufLoader::open_with(
            &path,
            LoaderOptions {
                mmap,
                fallback: FallbackPolicy::Allow,
            },
        )
        .unwrap();
        let first = &loader.file().tensor_at(0).unwrap().name;
        loader.dequantize_to_host(first, CpuPath::Fast).unwrap();

        // Another "process" truncates the file to half its size.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();

        let b = backend(Mode::Works);
        for t in loader.file().tensors() {
            let err = loader
                .dequantize_to_host(&t.name, CpuPath::Fast)
                .unwrap_err();
            assert!(
                matches!(err, LoadError::FileChanged { was, now, .. } if was == len && now == len / 2),
                "{err:?}"
            );
            assert!(err.to_string().contains("shrinking.gguf"), "{err}");
            let err = loader
                .load_tensor_to_gpu(&t.name, &b, OutputDType::F32)
                .unwrap_err();
            assert!(matches!(err, LoadError::FileChanged { .. }), "{err:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Every load path of `loader` on tensor `name`: the error each gives, or `None` if it loads.
fn errors_of_every_path(loader: &GgufLoader, name: &str) -> Vec<Option<LoadError>> {
    let serial = backend(Mode::Works);
    let piped = TestBackend::new(8);
    vec![
        loader.dequantize_to_host(name, CpuPath::Fast).err(),
        loader.load_to_host(name, None, LoadAs::Native).err(),
        loader.tensor_raw(name).err(),
        loader
            .load_tensor_to_gpu(name, &serial, OutputDType::F32)
            .err(),
        loader.load_all(&piped, OutputDType::F16).err(),
        loader
            .load_all_to_host(LoadAs::Values(OutputDType::F32), &mut |_| {})
            .err(),
    ]
}

/// A file rewritten in place at the same size (another version of the model copied over it,
/// say) is an error naming the file on every load path, mapped or not, rather than a load
/// mixing bytes of two versions: the loader records the file's modification and
/// status-change times, inode and device when it opens it and compares them after each read.
/// Nothing is reported while the file is left alone.
#[test]
fn a_file_rewritten_in_place_at_the_same_size_is_an_error_naming_it() {
    use std::os::unix::fs::FileExt;
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for mmap in [true, false] {
        let dir = std::env::temp_dir().join(format!("qf-rewrite-{}-{mmap}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rewritten.gguf");
        std::fs::copy(model(), &path).unwrap();
        // An old modification time, so that the rewrite below changes it whatever the clock's
        // granularity.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.set_modified(hour_ago).unwrap();
        let options = LoaderOptions {
            mmap,
            fallback: FallbackPolicy::Allow,
        };
        let loader = GgufLoader::open_with(&path, options).unwrap();
        let t = loader.file().tensor_at(0).unwrap();
        for (i, e) in errors_of_every_path(&loader, &t.name).iter().enumerate() {
            assert!(
                e.is_none(),
                "mmap {mmap}, path {i}: untouched file refused: {e:?}"
            );
        }

        // Another writer flips the first tensor's bytes in place: same size, same inode.
        let at = loader.file().data_offset() + t.offset;
        let mut bytes = vec![0u8; t.n_bytes as usize];
        f.read_exact_at(&mut bytes, at).unwrap();
        let flipped: Vec<u8> = bytes.iter().map(|b| !b).collect();
        f.write_all_at(&flipped, at).unwrap();
        let check = |loader: &GgufLoader, what: &str| {
            for (i, e) in errors_of_every_path(loader, &t.name)
                .into_iter()
                .enumerate()
            {
                let e = e.unwrap_or_else(|| panic!("mmap {mmap}, path {i}: rewrite not seen"));
                assert!(
                    matches!(&e, LoadError::FileModified { what: w, .. } if w.contains(what)),
                    "mmap {mmap}, path {i}: {e:?}"
                );
                let msg = e.to_string();
                assert!(
                    msg.contains("rewritten.gguf") && msg.contains("modified"),
                    "{msg}"
                );
            }
        };
        check(&loader, "modification time");
        // A writer that puts the old modification time back is seen by the status-change time.
        f.set_modified(hour_ago).unwrap();
        check(&loader, "status-change time");

        // Replaced by another file of the same size (renamed over it): another inode.
        let loader = GgufLoader::open_with(&path, options).unwrap();
        let other = dir.join("other.gguf");
        std::fs::copy(&path, &other).unwrap();
        std::fs::rename(&other, &path).unwrap();
        check(&loader, "inode");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn sixteen_threads_loading_different_tensors_get_the_bits_of_a_serial_load() {
    let path = model().with_file_name("tiny-llama-q4_0.gguf");
    let serial = GgufLoader::open(&path).unwrap();
    let b = backend(Mode::Works);
    let names: Vec<String> = serial.file().tensor_names().map(str::to_owned).collect();
    let want: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            serial
                .load_tensor_to_gpu(n, &b, OutputDType::Bf16)
                .unwrap()
                .download(&b)
                .unwrap()
        })
        .collect();

    let shared = GgufLoader::open(&path).unwrap();
    std::thread::scope(|s| {
        for i in 0..16 {
            let (shared, b, names, want) = (&shared, &b, &names, &want);
            s.spawn(move || {
                for (j, n) in names.iter().enumerate().skip(i % names.len()).step_by(3) {
                    let got = shared
                        .load_tensor_to_gpu(n, b, OutputDType::Bf16)
                        .unwrap()
                        .download(b)
                        .unwrap();
                    assert_eq!(got, want[j], "{n}");
                }
            });
        }
    });
}

/// The tensors an engine asks for into its own memory: every tensor of the model, at an offset
/// into a larger buffer, gets the rounded CPU reference's bits, and the bytes around it are left
/// as they were.
#[test]
fn dequantize_into_writes_the_reference_bits_at_the_offset_and_nothing_else() {
    let loader = open(FallbackPolicy::Deny);
    let b = TestBackend::new(3); // with offsets (the pipeline primitives)
    for info in loader.file().tensors() {
        let want = cpu::encode_as(
            &loader
                .dequantize_to_host(&info.name, CpuPath::Reference)
                .unwrap(),
            OutputDType::Bf16,
        );
        let mut dst = quant_gpu::Backend::alloc(&b, 256 + want.len() + 64).unwrap();
        quant_gpu::Backend::fill(&b, &mut dst, 0xAB).unwrap();
        let load = loader
            .dequantize_into(&info.name, &b, &mut dst, 256, OutputDType::Bf16)
            .unwrap();
        let quantized = info.ty.geometry().is_some_and(|g| g.is_quantized());
        let path = if quantized {
            LoadPath::Kernel
        } else {
            LoadPath::HostConvert
        };
        assert_eq!(load.path, path, "{}", info.name);
        let mut got = vec![0u8; dst.len()];
        quant_gpu::Backend::download(&b, &dst, &mut got).unwrap();
        assert!(got[..256].iter().all(|&x| x == 0xAB), "{}", info.name);
        assert_eq!(&got[256..256 + want.len()], &want[..], "{}", info.name);
        assert!(got[256 + want.len()..].iter().all(|&x| x == 0xAB));
    }
}

#[test]
fn dequantize_into_refuses_a_short_or_misaligned_destination_naming_the_tensor() {
    let loader = open(FallbackPolicy::Deny);
    let b = TestBackend::new(3);
    let name = "blk.0.attn_q.weight";
    let need = loader.tensor(name).unwrap().n_elements as usize * 2;
    let mut dst = quant_gpu::Backend::alloc(&b, need + 64).unwrap();
    let before = b.launches.load(Ordering::SeqCst);
    for (offset, want) in [(8, "multiple of 16"), (80, "bytes")] {
        let err = loader
            .dequantize_into(name, &b, &mut dst, offset, OutputDType::F16)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("tiny-llama-q4_k_m.gguf") && msg.contains(want),
            "{msg}"
        );
    }
    assert_eq!(b.launches.load(Ordering::SeqCst), before, "nothing ran");
    // A backend that cannot wrap foreign memory says so, naming the tensor.
    // SAFETY: the test backend refuses before touching the address.
    let err = unsafe { loader.dequantize_into_ptr(name, &b, 0x1000, need, OutputDType::F16) }
        .unwrap_err();
    assert!(
        err.to_string().contains(name) && err.to_string().contains("wrap_device_memory"),
        "{err}"
    );
    // A tensor the file does not have is named.
    let err = loader
        .dequantize_into("no.such.tensor", &b, &mut dst, 0, OutputDType::F16)
        .unwrap_err();
    assert!(matches!(err, LoadError::NoTensor { .. }), "{err}");
}

/// A loaded tensor is the caller's: `into_raw` hands over its address without freeing it.
#[test]
fn a_loaded_tensor_is_the_callers_and_gives_up_its_memory() {
    let loader = open(FallbackPolicy::Deny);
    let b = backend(Mode::Works);
    let name = "blk.0.ffn_down.weight";
    let t = loader
        .load_tensor_to_gpu(name, &b, OutputDType::F32)
        .unwrap();
    let ptr = t.device_ptr();
    assert_ne!(ptr, 0);
    assert_eq!(t.device(), (quant_gpu::DeviceKind::Cuda, 7));
    let want = t.download(&b).unwrap();
    let raw = t.into_raw();
    assert_eq!(raw.allocation.ptr, ptr);
    assert_eq!(raw.allocation.len, want.len());
    assert!(raw.allocation.owned);
    assert_eq!(raw.dtype, OutputDType::F32);
    // The memory was not freed: it still holds the values (the test device is host memory).
    // SAFETY: the test backend's allocation was leaked by `into_raw`, not freed.
    let still = unsafe { std::slice::from_raw_parts(ptr as *const u8, raw.allocation.len) };
    assert_eq!(still, &want[..]);
}
