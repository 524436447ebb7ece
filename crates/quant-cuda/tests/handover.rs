//! GPU tests of the hand-over API on CUDA, from an engine's side: a cudarc context and stream,
//! `CudaBackend::on_stream`, and memory crossing between quantforge and cudarc.
//!
//! * (a) stream ordering: another stream sees the values only after `make_stream_wait`, and
//!   without it demonstrably does not (a spin kernel holds the dequantization back ~200 ms);
//! * (b) `wrap_device_memory` refuses what it cannot use and accepts an exact allocation;
//!   `dequantize_into_ptr` into a cudarc slice writes the CPU reference's bits;
//! * (c) `into_raw`: the allocation outlives the tensor and is freed by cudarc; device memory
//!   returns to where it was after 50 tensors come and go.
//!
//! Gate (as in `tests/gpu.rs`): with `QUANTFORGE_GPU_TESTS=1` a missing GPU fails every test;
//! without it each test prints `SKIPPED:` on stderr and returns. The tests take a lock, so that
//! (c)'s free-memory figures see no other test's allocations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use quant_core::cpu::{self, CpuPath};
use quant_core::{random_bytes, GgmlType, OutputDType};
use quant_cuda::cudarc::driver::{
    result, CudaContext, CudaFunction, CudaStream, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use quant_cuda::cudarc::nvrtc;
use quant_cuda::CudaBackend;
use quant_gpu::testing::{expect_device, gpu_tests_enabled};
use quant_gpu::{Backend, DeviceKind, GpuError};
use quant_loader::{GgufLoader, LoadPath};

// Link the formats of the model the tests load, so that their registrations exist.
use quant_q4k as _;
use quant_q6k as _;

const MODEL: &str = "tiny-llama-q4_k_m.gguf";
const DTYPES: [OutputDType; 3] = [OutputDType::F32, OutputDType::F16, OutputDType::Bf16];

/// An engine: its context and stream, and quantforge on that stream.
struct Engine {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    backend: CudaBackend,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// The engine on device 0, or `None` (skipped); panics when the tests are enabled and there is
/// no usable device.
fn engine(test: &str) -> Option<Engine> {
    static DEVICE: Mutex<()> = Mutex::new(());
    if !gpu_tests_enabled(DeviceKind::Cuda, test) {
        return None;
    }
    let lock = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    // cudarc panics without libcuda; quantforge says why instead.
    match quant_cuda::device_count() {
        Ok(n) if n > 0 => {}
        other => expect_device(DeviceKind::Cuda, Err(format!("{other:?}"))),
    }
    let ctx = CudaContext::new(0).expect("cudarc context on device 0");
    let stream = ctx.new_stream().expect("the engine's stream");
    let backend = CudaBackend::on_stream(stream.clone()).expect("quantforge on the stream");
    Some(Engine {
        ctx,
        stream,
        backend,
        _one_at_a_time: lock,
    })
}

/// The test model: `QUANTFORGE_TEST_DATA` if set, else the repository's `tests/data` as built,
/// else `tests/data` under the current directory (binaries run on another machine).
fn model() -> PathBuf {
    if let Some(dir) = std::env::var_os("QUANTFORGE_TEST_DATA") {
        return PathBuf::from(dir).join(MODEL);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("tests/data")
    }
    .join(MODEL)
}

/// The first differing element of two byte strings of `dtype` values, described.
fn first_difference(dtype: OutputDType, want: &[u8], got: &[u8]) -> Option<String> {
    let size = dtype.size();
    want.chunks_exact(size)
        .zip(got.chunks_exact(size))
        .position(|(w, g)| w != g)
        .map(|i| {
            let at = i * size..(i + 1) * size;
            format!(
                "element {i} of {}: want {:02x?}, got {:02x?}",
                want.len() / size,
                &want[at.clone()],
                &got[at]
            )
        })
}

/// Spins one thread for `ns` nanoseconds of the GPU's global timer.
const SPIN: &str = r#"
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
"#;
const SPIN_NS: u64 = 200_000_000;

fn spin_kernel(ctx: &Arc<CudaContext>) -> CudaFunction {
    let ptx = nvrtc::compile_ptx(SPIN).expect("NVRTC compiles the spin kernel");
    ctx.load_module(ptx)
        .and_then(|m| m.load_function("spin"))
        .expect("the spin kernel loads")
}

fn launch_spin(stream: &CudaStream, spin: &CudaFunction) {
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (1, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the kernel takes one u64.
    unsafe { stream.launch_builder(spin).arg(&SPIN_NS).launch(cfg) }.expect("spin launch");
}

/// Copies `host.len()` bytes at `ptr` to `host`, queued on `stream` (nothing else orders it),
/// and waits for that stream alone.
fn copy_on(stream: &CudaStream, ptr: u64, host: &mut [u8]) {
    stream.context().bind_to_thread().unwrap();
    // SAFETY: `ptr` holds at least `host.len()` bytes; we wait for the copy before returning.
    unsafe { result::memcpy_dtoh_async(host, ptr, stream.cu_stream()) }.expect("copy on s2");
    stream.synchronize().unwrap();
}

/// (a) A dequantization queued on the engine's stream s1 behind a ~200 ms spin: a copy on s2
/// without `make_stream_wait` still reads the poison (the race is real), with it the values.
#[test]
fn another_stream_sees_the_values_only_after_make_stream_wait() {
    let Some(e) = engine("another_stream_sees_the_values_only_after_make_stream_wait") else {
        return;
    };
    let format = quant_core::lookup(GgmlType::Q4_K).expect("Q4_K is registered");
    let spec = format.kernel().expect("Q4_K has a kernel");
    let n_blocks = 8192; // 2 Mi values
    let mut blocks = random_bytes(n_blocks * format.geometry().block_bytes, 0x5EED);
    format.make_scales_finite(&mut blocks);
    let reference = cpu::dequantize_to_vec(format, &blocks, CpuPath::Reference).unwrap();
    let want = cpu::encode_as(&reference, OutputDType::F16);

    // Everything that allocates, compiles or synchronises happens before the race.
    e.backend.prepare_kernel(spec).unwrap();
    let spin = spin_kernel(&e.ctx);
    let s2 = e.ctx.new_stream().unwrap();
    let mut src = e.backend.alloc(blocks.len()).unwrap();
    e.backend.upload(&blocks, &mut src).unwrap();
    let mut unordered = e.backend.alloc(want.len()).unwrap();
    let mut ordered = e.backend.alloc(want.len()).unwrap();
    e.backend.fill(&mut unordered, 0xFF).unwrap();
    e.backend.fill(&mut ordered, 0xFF).unwrap();
    e.backend.synchronize().unwrap();
    let mut host = vec![0u8; want.len()];

    // Control: s2 copies while s1 spins, before the kernel can have run.
    launch_spin(&e.stream, &spin);
    e.backend
        .dequantize(
            spec,
            &src,
            n_blocks as u64,
            &mut unordered,
            OutputDType::F16,
        )
        .unwrap();
    let t = Instant::now();
    copy_on(&s2, unordered.device_ptr(), &mut host);
    let unordered_ms = t.elapsed().as_secs_f64() * 1e3;
    let written = host.iter().filter(|&&b| b != 0xFF).count();
    assert_eq!(
        written, 0,
        "without make_stream_wait s2 should have read the 0xFF poison (s1 was spinning), but \
         {written} bytes differ: the race window this test relies on is not there"
    );

    // The same with make_stream_wait: s2 waits for the spin and the kernel, then reads.
    launch_spin(&e.stream, &spin);
    e.backend
        .dequantize(spec, &src, n_blocks as u64, &mut ordered, OutputDType::F16)
        .unwrap();
    // SAFETY: s2 is a live stream of the backend's context.
    unsafe { e.backend.make_stream_wait(s2.cu_stream() as usize) }.unwrap();
    let t = Instant::now();
    copy_on(&s2, ordered.device_ptr(), &mut host);
    let ordered_ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "copy on s2: {unordered_ms:.1} ms unordered, {ordered_ms:.1} ms after make_stream_wait"
    );
    if let Some(d) = first_difference(OutputDType::F16, &want, &host) {
        panic!("after make_stream_wait s2 read other bits than the CPU reference's: {d}");
    }

    // The unordered kernel did run, after its spin.
    e.backend.download(&unordered, &mut host).unwrap();
    assert!(
        first_difference(OutputDType::F16, &want, &host).is_none(),
        "the control's kernel wrote wrong values"
    );
}

/// (b) Memory an engine hands in: refused when null, misaligned, too short or not device
/// memory, accepted when exact; `dequantize_into_ptr` into cudarc slices gives the CPU
/// reference's bits in every output type.
#[test]
fn wrap_device_memory_checks_and_dequantize_into_ptr_writes_the_reference_bits() {
    let Some(e) =
        engine("wrap_device_memory_checks_and_dequantize_into_ptr_writes_the_reference_bits")
    else {
        return;
    };
    // A plain cuMemAlloc (whole 2 MiB pages, so no rounding can hide a byte): the driver knows
    // its exact range.
    const LEN: usize = 2 << 20;
    e.ctx.bind_to_thread().unwrap();
    // SAFETY: freed below.
    let base = unsafe { result::malloc_sync(LEN) }.unwrap();
    let host = vec![0u128; LEN / 16]; // 16-byte aligned, so only "not device memory" refuses it
    let host_ptr = host.as_ptr() as u64;
    for (ptr, len, why) in [
        (0, 16, "null"),
        (base + 8, 16, "aligned to 16"),
        (base, LEN + 1, "the allocation holding it"),
        (base + 16, LEN, "the allocation holding it"),
        (host_ptr, 16, ""),
    ] {
        // SAFETY: each is refused before the memory is used.
        match unsafe { e.backend.wrap_device_memory(ptr, len) } {
            Err(err @ GpuError::ForeignMemory { .. }) => {
                let text = err.to_string();
                assert!(text.contains(why), "{ptr:#x} + {len}: {text}");
                eprintln!("refused: {text}");
            }
            Err(other) => panic!("{ptr:#x} + {len}: expected ForeignMemory, got {other}"),
            Ok(_) => panic!("{ptr:#x} + {len} bytes was accepted"),
        }
    }
    // SAFETY: `base` stays allocated until the wrapper is gone.
    let buf = unsafe { e.backend.wrap_device_memory(base, LEN) }.expect("the exact allocation");
    assert_eq!((buf.device_ptr(), buf.len()), (base, LEN));
    assert!(!buf.owns_memory());
    drop(buf);
    // The wrapper did not free it: freeing it now succeeds (a double free would not).
    // SAFETY: allocated above, freed once.
    unsafe { result::free_sync(base) }.expect("still ours to free");
    drop(host);

    let loader = GgufLoader::open(model()).unwrap();
    for name in ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"] {
        let reference = loader.dequantize_to_host(name, CpuPath::Reference).unwrap();
        for dtype in DTYPES {
            let want = cpu::encode_as(&reference, dtype);
            // cudarc's safe allocation (stream-ordered where the device has memory pools).
            let mut dst = e.stream.alloc_zeros::<u8>(want.len()).unwrap();
            let load = {
                let (ptr, _write) = dst.device_ptr_mut(&e.stream);
                // SAFETY: `dst` outlives the call and nothing else uses it meanwhile.
                unsafe { loader.dequantize_into_ptr(name, &e.backend, ptr, want.len(), dtype) }
                    .unwrap_or_else(|err| panic!("{name} as {dtype:?}: {err}"))
            };
            assert_eq!(load.path, LoadPath::Kernel, "{name} as {dtype:?}");
            let got = e.stream.clone_dtoh(&dst).unwrap();
            if let Some(d) = first_difference(dtype, &want, &got) {
                panic!("{name} as {dtype:?}: {d}");
            }
        }
    }
}

/// (c) A tensor's allocation handed over with `into_raw` outlives the tensor, holds its values
/// and is freed with cudarc; device memory comes back after 50 tensors are loaded and let go.
#[test]
fn into_raw_outlives_the_tensor_and_memory_returns_after_50_tensors() {
    let Some(e) = engine("into_raw_outlives_the_tensor_and_memory_returns_after_50_tensors") else {
        return;
    };
    let loader = GgufLoader::open(model()).unwrap();
    let names: Vec<String> = loader
        .file()
        .tensors()
        .filter(|t| t.ty.geometry().is_some_and(|g| g.is_quantized()))
        .map(|t| t.name)
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    let free = |what: &str| -> usize {
        e.ctx.synchronize().unwrap();
        let (free, _) = e.ctx.mem_get_info().unwrap();
        eprintln!("free device memory {what}: {free}");
        free
    };
    // 50 tensors held at once (the free memory must move, or the final check proves nothing),
    // then let go: every other one dropped, the rest handed over and freed with cudarc.
    // Returns the free memory while they are held.
    let fifty = || -> usize {
        let mut held = Vec::new();
        for i in 0..50 {
            let (name, dtype) = (&names[i % names.len()], DTYPES[i / names.len() % 3]);
            held.push(loader.load_tensor_to_gpu(name, &e.backend, dtype).unwrap());
        }
        let loaded = free("with 50 tensors");
        for (i, t) in held.into_iter().enumerate() {
            if i % 2 == 0 {
                drop(t);
            } else {
                let raw = t.into_raw();
                e.ctx.bind_to_thread().unwrap();
                // SAFETY: given up by quantforge; freed once.
                unsafe { result::free_sync(raw.allocation.ptr) }.unwrap();
            }
        }
        loaded
    };
    // A first round warms up: both formats' kernels, and whatever the driver keeps for itself.
    free("before the first round");
    fifty();
    let start = free("at the start");

    // into_raw: the tensor goes, its memory stays.
    let name = "blk.0.ffn_down.weight";
    let t = loader
        .load_tensor_to_gpu(name, &e.backend, OutputDType::F32)
        .unwrap();
    let want = t.download(&e.backend).unwrap();
    let ptr = t.device_ptr();
    let raw = t.into_raw();
    assert_eq!((raw.allocation.ptr, raw.allocation.len), (ptr, want.len()));
    assert!(raw.allocation.owned);
    let mut got = vec![0u8; want.len()];
    e.ctx.bind_to_thread().unwrap();
    // SAFETY: the allocation is alive (given up, not freed) and holds `want.len()` bytes.
    unsafe { result::memcpy_dtoh_sync(&mut got, raw.allocation.ptr) }.unwrap();
    assert!(got == want, "the handed-over memory lost its values");
    // SAFETY: quantforge gave the allocation up; freed once, here.
    unsafe { result::free_sync(raw.allocation.ptr) }.expect("cuMemFree of the handed-over memory");

    let loaded = fifty();
    assert!(loaded < start, "50 tensors did not show in the free memory");
    let end = free("after letting them go");
    assert_eq!(end, start, "device memory did not come back");
}

/// Backends on two streams of one context, or on the context itself, share the modules that the
/// first built: a second engine stream costs no compilation.
#[test]
fn backends_of_one_context_share_their_modules() {
    let Some(e) = engine("backends_of_one_context_share_their_modules") else {
        return;
    };
    let spec = quant_core::lookup(GgmlType::Q6_K)
        .and_then(|f| f.kernel())
        .expect("Q6_K has a kernel");
    e.backend.prepare_kernel(spec).unwrap();
    let second = CudaBackend::on_stream(e.ctx.new_stream().unwrap()).unwrap();
    let on_context = CudaBackend::on_context(e.ctx.clone()).unwrap();
    for b in [&second, &on_context] {
        b.prepare_kernel(spec).unwrap();
        assert_eq!(b.modules_built(), 0, "the context's module was not shared");
    }
    // And the shared module runs on the second stream.
    let format = quant_core::lookup(GgmlType::Q6_K).unwrap();
    let mut blocks = random_bytes(64 * format.geometry().block_bytes, 0x0C7);
    format.make_scales_finite(&mut blocks);
    let reference = cpu::dequantize_to_vec(format, &blocks, CpuPath::Reference).unwrap();
    let want = cpu::encode_as(&reference, OutputDType::Bf16);
    let mut src = second.alloc(blocks.len()).unwrap();
    second.upload(&blocks, &mut src).unwrap();
    let mut dst = second.alloc(want.len()).unwrap();
    second
        .dequantize(spec, &src, 64, &mut dst, OutputDType::Bf16)
        .unwrap();
    let mut got = vec![0u8; want.len()];
    second.download(&dst, &mut got).unwrap();
    assert_eq!(first_difference(OutputDType::Bf16, &want, &got), None);
}

/// `dequantize_on_stream` queues the kernel on a stream of the engine's, not the backend's: the
/// values are there once that stream is synchronised.
#[test]
fn dequantize_on_stream_runs_on_the_callers_stream() {
    let Some(e) = engine("dequantize_on_stream_runs_on_the_callers_stream") else {
        return;
    };
    let format = quant_core::lookup(GgmlType::Q4_K).expect("Q4_K is registered");
    let spec = format.kernel().expect("Q4_K has a kernel");
    let n_blocks = 300;
    let mut blocks = random_bytes(n_blocks * format.geometry().block_bytes, 0x57E4);
    format.make_scales_finite(&mut blocks);
    let reference = cpu::dequantize_to_vec(format, &blocks, CpuPath::Reference).unwrap();
    for dtype in DTYPES {
        let want = cpu::encode_as(&reference, dtype);
        let mut src = e.backend.alloc(blocks.len()).unwrap();
        e.backend.upload(&blocks, &mut src).unwrap();
        let mut dst = e.backend.alloc(want.len()).unwrap();
        e.backend.fill(&mut dst, 0xFF).unwrap();
        e.backend.synchronize().unwrap();
        let theirs = e.ctx.new_stream().unwrap();
        let handle = theirs.cu_stream() as usize;
        let n = n_blocks as u64;
        // SAFETY: a live stream of the backend's context; the buffers outlive its synchronize.
        unsafe {
            e.backend
                .dequantize_on_stream(spec, &src, n, &mut dst, dtype, handle)
        }
        .unwrap();
        theirs.synchronize().unwrap();
        let mut got = vec![0u8; want.len()];
        e.backend.download(&dst, &mut got).unwrap();
        assert_eq!(first_difference(dtype, &want, &got), None, "{dtype}");
    }
}
