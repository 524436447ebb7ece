//! GPU tests of the HIP backend's pipeline primitives (pinned host buffers, the copy stream,
//! events as fences) and of the hand-over API for engines (device pointers, `into_raw`, caller
//! memory wrapped and written, `make_stream_wait`, `HipBackend::on_stream`).
//!
//! Gate (`quant_gpu::testing`): they run with `QUANTFORGE_GPU_TESTS=1` and
//! `QUANTFORGE_GPU_KIND=hip` (the switches of the workspace's GPU suites), and then a missing
//! AMD GPU fails them loudly. Otherwise each prints a `SKIPPED:` line on stderr and returns: no
//! machine of this project has an AMD GPU, so these have never run. The hand-over tests call the HIP runtime directly, as an engine
//! would, through the bindings `quant_rocm` re-exports.

use std::ffi::c_void;
use std::sync::OnceLock;

use quant_core::cpu::{self, CpuPath};
use quant_core::{random_bytes, registry, OutputDType, QuantFormat};
use quant_gpu::testing::{expect_device, gpu_tests_enabled};
use quant_gpu::{Backend, DeviceKind, DeviceTensor, Fence, GpuError, Queue, RawFence, TensorDType};
use quant_rocm::hip_runtime_sys as hip;
use quant_rocm::HipBackend;

// Link the format crates so that the registry holds their kernel specs.
use quant_float as _;
use quant_q4_0 as _;
use quant_q4k as _;
use quant_q6k as _;

fn backend(test: &str) -> Option<&'static HipBackend> {
    if !gpu_tests_enabled(DeviceKind::Hip, test) {
        return None;
    }
    static BACKEND: OnceLock<HipBackend> = OnceLock::new();
    Some(BACKEND.get_or_init(|| {
        let b = expect_device(DeviceKind::Hip, HipBackend::new(0));
        eprintln!("device: {}", b.info());
        b
    }))
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn pinned_upload_at_an_offset_round_trips() {
    let Some(b) = backend("pinned_upload_at_an_offset_round_trips") else {
        return;
    };
    assert!(b.async_primitives());
    let n = (3 << 20) + 17;
    let mut host = b.alloc_host(n).unwrap();
    assert!(host.is_pinned());
    assert_eq!(host.len(), n);
    assert!(host.as_slice().iter().all(|&x| x == 0), "alloc_host zeroes");
    let want = pattern(n, 7);
    host.as_mut_slice().unwrap().copy_from_slice(&want);
    let (from, to, off) = (4096usize, n - 5, 256usize);
    let mut dev = b.alloc(off + n).unwrap();
    b.fill(&mut dev, 0xEE).unwrap();
    // The fill is on the compute queue: make the copy queue wait for it.
    let filled = b.record(Queue::Compute).unwrap();
    b.wait_fence(Queue::Copy, &filled).unwrap();
    b.upload_async(Queue::Copy, &mut host, from..to, &mut dev, off)
        .unwrap();
    assert!(host.pending().is_some(), "the copy left its fence");
    let copied = b.record(Queue::Copy).unwrap();
    b.wait_fence(Queue::Compute, &copied).unwrap();
    let mut got = vec![0u8; off + n];
    b.download(&dev, &mut got).unwrap();
    assert!(
        got[..off].iter().all(|&x| x == 0xEE),
        "wrote before the offset"
    );
    assert!(got[off..off + (to - from)] == want[from..to]);
    assert!(got[off + (to - from)..].iter().all(|&x| x == 0xEE));
}

#[test]
fn a_fence_recorded_after_a_copy_completes_after_it() {
    let Some(b) = backend("a_fence_recorded_after_a_copy_completes_after_it") else {
        return;
    };
    let n = 8 << 20;
    let mut host = b.alloc_host(n).unwrap();
    let want = pattern(n, 3);
    host.as_mut_slice().unwrap().copy_from_slice(&want);
    let mut dev = b.alloc(n).unwrap();
    b.upload_async(Queue::Copy, &mut host, 0..n, &mut dev, 0)
        .unwrap();
    let f = b.record(Queue::Copy).unwrap();
    assert_eq!(f.queue(), Queue::Copy);
    f.wait().unwrap();
    // The copy has landed: a download on the compute queue needs no further wait.
    let mut got = vec![0u8; n];
    b.download(&dev, &mut got).unwrap();
    assert!(got == want);
    // The host buffer's own fence is complete too, so writing does not block on the device.
    host.wait_idle().unwrap();
    assert!(host.pending().is_none());
}

#[test]
fn reusing_a_pinned_buffer_waits_for_its_copy() {
    let Some(b) = backend("reusing_a_pinned_buffer_waits_for_its_copy") else {
        return;
    };
    let n = 16 << 20;
    let mut host = b.alloc_host(n).unwrap();
    let mut dev = b.alloc(2 * n).unwrap();
    b.fill(&mut dev, 0).unwrap();
    b.synchronize().unwrap();
    for round in 0..4u8 {
        host.as_mut_slice().unwrap().fill(0x11 + round);
        b.upload_async(Queue::Copy, &mut host, 0..n, &mut dev, 0)
            .unwrap();
        // Writing waits for the copy above: the device keeps this round's byte.
        host.as_mut_slice().unwrap().fill(0x80 + round);
        b.upload_async(Queue::Copy, &mut host, 0..n, &mut dev, n)
            .unwrap();
        // synchronize drains the copy queue as well as the compute queue.
        b.synchronize().unwrap();
        let mut out = vec![0u8; 2 * n];
        b.download(&dev, &mut out).unwrap();
        assert!(out[..n].iter().all(|&x| x == 0x11 + round), "round {round}");
        assert!(out[n..].iter().all(|&x| x == 0x80 + round), "round {round}");
    }
    // Dropping a buffer with a copy in flight waits for it.
    b.upload_async(Queue::Copy, &mut host, 0..n, &mut dev, 0)
        .unwrap();
    drop(host);
    b.synchronize().unwrap();
}

#[derive(Debug)]
struct HostOnly;
impl RawFence for HostOnly {
    fn wait(&self) -> Result<(), GpuError> {
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn bad_uploads_and_foreign_fences_are_handled() {
    let Some(b) = backend("bad_uploads_and_foreign_fences_are_handled") else {
        return;
    };
    let n = 4096;
    let mut host = b.alloc_host(n).unwrap();
    let mut dev = b.alloc(n).unwrap();
    for (range, off) in [
        (0..n + 1, 0),
        (0..n, 1),
        (std::ops::Range { start: 10, end: 5 }, 0),
        (0..8, usize::MAX),
    ] {
        let e = b
            .upload_async(Queue::Copy, &mut host, range.clone(), &mut dev, off)
            .unwrap_err();
        assert!(
            matches!(e, GpuError::BufferSize { .. } | GpuError::Overflow { .. }),
            "{range:?} at {off}: {e}"
        );
    }
    assert!(host.pending().is_none(), "a refused copy leaves no fence");
    // An empty range queues nothing.
    b.upload_async(Queue::Copy, &mut host, 5..5, &mut dev, n)
        .unwrap();
    // Ordinary memory is copied synchronously, at the offset.
    let mut pageable = quant_gpu::HostBuffer::pageable(16);
    pageable.as_mut_slice().unwrap().fill(0x42);
    b.upload_async(Queue::Copy, &mut pageable, 0..16, &mut dev, 32)
        .unwrap();
    let mut got = vec![0u8; 48];
    b.download(&dev, &mut got).unwrap();
    assert!(got[32..].iter().all(|&x| x == 0x42));
    // Fences: done ones and other backends' are fine (the latter waited for on the host).
    b.wait_fence(Queue::Compute, &Fence::done(Queue::Copy))
        .unwrap();
    b.wait_fence(Queue::Copy, &Fence::new(Queue::Compute, Box::new(HostOnly)))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The hand-over API for engines.

/// Asserts that a HIP runtime call succeeded.
fn hip_ok(rc: hip::hipError_t, what: &str) {
    assert_eq!(rc, hip::hipError_t::hipSuccess, "{what}");
}

/// A non-blocking stream of device 0, as an engine would create it.
fn engine_stream() -> hip::hipStream_t {
    let mut s: hip::hipStream_t = std::ptr::null_mut();
    // SAFETY: plain runtime calls writing one handle.
    unsafe {
        hip_ok(hip::hipSetDevice(0), "hipSetDevice");
        hip_ok(
            hip::hipStreamCreateWithFlags(&mut s, hip::hipStreamNonBlocking),
            "hipStreamCreateWithFlags",
        );
    }
    s
}

/// Every registered format with a kernel (the ones this crate's tests link).
fn kernel_formats() -> Vec<&'static dyn QuantFormat> {
    let v: Vec<_> = registry().iter().filter(|f| f.kernel().is_some()).collect();
    assert!(!v.is_empty(), "no registered format has kernels");
    v
}

/// `n_blocks` random blocks of `f` with finite scales, and the CPU reference's f32 values.
fn blocks_and_reference(f: &dyn QuantFormat, n_blocks: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let mut src = random_bytes(n_blocks * f.geometry().block_bytes, seed);
    f.make_scales_finite(&mut src);
    let values = cpu::dequantize_to_vec(f, &src, CpuPath::Reference).unwrap();
    (src, values)
}

/// Equal bits, or NaN on both sides (a GPU's NaN need not carry the CPU's payload).
fn same_values(dtype: OutputDType, expected: &[u8], got: &[u8]) -> bool {
    let size = dtype.size();
    expected.len() == got.len()
        && expected
            .chunks_exact(size)
            .zip(got.chunks_exact(size))
            .all(|(e, g)| {
                e == g
                    || match dtype {
                        OutputDType::F32 => {
                            f32::from_le_bytes(e.try_into().unwrap()).is_nan()
                                && f32::from_le_bytes(g.try_into().unwrap()).is_nan()
                        }
                        OutputDType::F16 | OutputDType::Bf16 => {
                            let (a, b) = (
                                u16::from_le_bytes([e[0], e[1]]),
                                u16::from_le_bytes([g[0], g[1]]),
                            );
                            let (exp, man) = if dtype == OutputDType::F16 {
                                (0x7C00, 0x03FF)
                            } else {
                                (0x7F80, 0x007F)
                            };
                            let nan = |h: u16| h & exp == exp && h & man != 0;
                            nan(a) && nan(b)
                        }
                    }
            })
}

/// A loaded tensor's device pointer is its memory (a wrapped view of it reads the values),
/// `into_raw` gives the allocation up without freeing it, and `hipFree` then frees it: after
/// that the runtime no longer knows the address.
#[test]
fn a_tensor_hands_over_its_device_memory() {
    let Some(b) = backend("a_tensor_hands_over_its_device_memory") else {
        return;
    };
    let f = kernel_formats()[0];
    let n_blocks = 4096;
    let (src, values) = blocks_and_reference(f, n_blocks, 11);
    let expected = cpu::encode_as(&values, OutputDType::F32);
    let mut dsrc = b.alloc(src.len()).unwrap();
    b.upload(&src, &mut dsrc).unwrap();
    let mut out = b.alloc(expected.len()).unwrap();
    b.dequantize(
        f.kernel().unwrap(),
        &dsrc,
        n_blocks as u64,
        &mut out,
        OutputDType::F32,
    )
    .unwrap();
    b.synchronize().unwrap();
    let tensor = DeviceTensor {
        buffer: out,
        shape: vec![values.len() as u64],
        dtype: TensorDType::Values(OutputDType::F32),
    };
    let ptr = tensor.device_ptr();
    assert!(
        ptr != 0 && ptr % quant_gpu::KERNEL_ALIGN as u64 == 0,
        "{ptr:#x}"
    );
    assert_eq!(tensor.device(), (DeviceKind::Hip, 0));
    assert!(tensor.buffer.owns_memory());

    let read_at = |ptr: u64| -> Vec<u8> {
        // SAFETY: the allocation is alive (held by `tensor`, or given up and not yet freed).
        let view = unsafe { b.wrap_device_memory(ptr, expected.len()) }.unwrap();
        assert!(!view.owns_memory());
        let mut got = vec![0u8; expected.len()];
        b.download(&view, &mut got).unwrap();
        got
    };
    assert!(same_values(OutputDType::F32, &expected, &read_at(ptr)));
    // The view is gone and did not free anything: the tensor still reads.
    assert!(same_values(
        OutputDType::F32,
        &expected,
        &tensor.download(b).unwrap()
    ));

    let raw = tensor.into_raw();
    assert_eq!(raw.allocation.ptr, ptr);
    assert_eq!(raw.allocation.len, expected.len());
    assert_eq!(raw.allocation.device, (DeviceKind::Hip, 0));
    assert!(raw.allocation.owned, "the allocation is now the caller's");
    assert_eq!(raw.shape, vec![values.len() as u64]);
    // Given up, not freed: still readable.
    assert!(same_values(OutputDType::F32, &expected, &read_at(ptr)));
    // The caller frees it, with hipFree, as an engine's deleter would.
    // SAFETY: hipMalloc'd by the backend, given up by into_raw, freed once; nothing uses it.
    hip_ok(
        unsafe { hip::hipFree(ptr as usize as *mut c_void) },
        "hipFree of into_raw's allocation",
    );
    // SAFETY: refused: the runtime no longer knows the address, so nothing is written.
    match unsafe { b.wrap_device_memory(ptr, 16) } {
        Err(GpuError::ForeignMemory { .. }) => {}
        other => panic!("freed memory was wrapped: {other:?}"),
    }
}

/// `dequantize_into`'s path with an engine's memory: an allocation made with the backend's own
/// `alloc` and given up with `into_raw` (hipMalloc'd, the caller's), wrapped at an interior
/// offset, receives every format's values in every output type equal to the CPU reference, and
/// nothing outside the wrapped range is written. Ranges past the allocation and misaligned
/// pointers are refused.
#[test]
fn dequantize_into_caller_memory_matches_the_cpu_reference() {
    let Some(b) = backend("dequantize_into_caller_memory_matches_the_cpu_reference") else {
        return;
    };
    const POISON: u8 = 0x7B;
    const PAD: usize = 256;
    for (i, f) in kernel_formats().into_iter().enumerate() {
        let n_blocks = 3000 + i;
        let (src, values) = blocks_and_reference(f, n_blocks, 0x5eed + i as u64);
        let mut dsrc = b.alloc(src.len()).unwrap();
        b.upload(&src, &mut dsrc).unwrap();
        for dtype in OutputDType::ALL {
            let what = format!("{} {dtype}", f.name());
            let expected = cpu::encode_as(&values, dtype);
            let out = expected.len();
            let engine = b.alloc(out + 2 * PAD).unwrap().into_raw();
            assert!(engine.owned);
            // SAFETY (all wraps below): `engine` stays allocated until the hipFree at the end,
            // after the backend has synchronized.
            let mut whole = unsafe { b.wrap_device_memory(engine.ptr, out + 2 * PAD) }.unwrap();
            b.fill(&mut whole, POISON).unwrap();
            let mut dst = unsafe { b.wrap_device_memory(engine.ptr + PAD as u64, out) }.unwrap();
            for (ptr, len, why) in [
                // Far past the end: the runtime may round an allocation's size up a little.
                (
                    engine.ptr + PAD as u64,
                    out + PAD + (64 << 20),
                    "does not hold",
                ),
                (engine.ptr + 8, out, "aligned"),
            ] {
                match unsafe { b.wrap_device_memory(ptr, len) } {
                    Err(GpuError::ForeignMemory { reason, .. }) => {
                        assert!(reason.contains(why), "{what}: {reason}")
                    }
                    other => panic!("{what}: {len} bytes at {ptr:#x} accepted: {other:?}"),
                }
            }
            b.dequantize_at(
                Queue::Compute,
                f.kernel().unwrap(),
                &dsrc,
                0,
                n_blocks as u64,
                &mut dst,
                0,
                dtype,
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            b.synchronize().unwrap();
            let mut got = vec![0u8; out + 2 * PAD];
            b.download(&whole, &mut got).unwrap();
            assert!(
                same_values(dtype, &expected, &got[PAD..PAD + out]),
                "{what}: the values differ from the CPU reference"
            );
            assert!(
                got[..PAD]
                    .iter()
                    .chain(&got[PAD + out..])
                    .all(|&x| x == POISON),
                "{what}: written outside the wrapped range"
            );
            drop((whole, dst));
            // SAFETY: the backend is synchronized; the allocation is the caller's, freed once.
            hip_ok(
                unsafe { hip::hipFree(engine.ptr as usize as *mut c_void) },
                &format!("{what}: hipFree"),
            );
        }
    }
}

/// After `make_stream_wait(s)`, work queued on the engine's stream `s` sees everything queued
/// before on both of the backend's streams (many fills on the compute stream, an asynchronous
/// upload on the copy stream), with no host synchronisation in between. `0` (the null stream)
/// is accepted; `1` and `2` are refused.
#[test]
fn make_stream_wait_orders_another_stream() {
    let Some(b) = backend("make_stream_wait_orders_another_stream") else {
        return;
    };
    let s = engine_stream();
    let n = 256 << 20;
    let mut big = b.alloc(n).unwrap();
    let mut copy = b.alloc(n).unwrap();
    let m = 8 << 20;
    let mut host = b.alloc_host(m).unwrap();
    let want = pattern(m, 5);
    let mut landed = b.alloc(m).unwrap();
    let mut landed_copy = b.alloc(m).unwrap();
    for round in 0..3u8 {
        b.fill(&mut copy, 0).unwrap();
        b.fill(&mut landed_copy, 0).unwrap();
        b.synchronize().unwrap();
        // Enough work on the compute stream that an unordered copy would see an earlier value.
        for v in 1..=32u8 {
            b.fill(&mut big, v.wrapping_add(round)).unwrap();
        }
        host.as_mut_slice().unwrap().copy_from_slice(&want);
        b.upload_async(Queue::Copy, &mut host, 0..m, &mut landed, 0)
            .unwrap();
        // SAFETY: `s` is a live stream of device 0, destroyed at the end of this test.
        unsafe { b.make_stream_wait(s as usize) }.unwrap();
        // SAFETY: the four device buffers are alive and synchronized below before any reuse.
        unsafe {
            hip_ok(
                hip::hipMemcpyDtoDAsync(
                    copy.device_ptr() as usize as _,
                    big.device_ptr() as usize as _,
                    n,
                    s,
                ),
                "hipMemcpyDtoDAsync on the engine's stream",
            );
            hip_ok(
                hip::hipMemcpyDtoDAsync(
                    landed_copy.device_ptr() as usize as _,
                    landed.device_ptr() as usize as _,
                    m,
                    s,
                ),
                "hipMemcpyDtoDAsync on the engine's stream",
            );
            hip_ok(hip::hipStreamSynchronize(s), "hipStreamSynchronize");
        }
        let mut got = vec![0u8; n];
        b.download(&copy, &mut got).unwrap();
        let last = 32u8.wrapping_add(round);
        assert!(
            got.iter().all(|&x| x == last),
            "round {round}: not the last fill"
        );
        let mut got = vec![0u8; m];
        b.download(&landed_copy, &mut got).unwrap();
        assert!(got == want, "round {round}: not the uploaded bytes");
    }
    // SAFETY: 0 is the device's null stream.
    unsafe { b.make_stream_wait(0) }.unwrap();
    for sentinel in [1usize, 2] {
        // SAFETY: refused before any runtime call.
        let e = unsafe { b.make_stream_wait(sentinel) }.unwrap_err();
        assert!(matches!(e, GpuError::Driver { .. }), "{e}");
    }
    b.synchronize().unwrap();
    // SAFETY: created above; the backend queued nothing on it (it only waited on events).
    unsafe { hip_ok(hip::hipStreamDestroy(s), "hipStreamDestroy") };
}

/// A backend on an engine's stream queues its kernels there: a copy the engine queues on the
/// same stream right after a load reads the loaded values without any synchronisation, also
/// after a pipelined copy on the backend's own copy stream. Dropping the backend leaves the
/// stream alive (the engine destroys it). The null stream works as well; sentinels are refused.
#[test]
fn on_stream_queues_kernels_on_the_engines_stream() {
    if backend("on_stream_queues_kernels_on_the_engines_stream").is_none() {
        return;
    }
    let s = engine_stream();
    // SAFETY: `s` is a live stream of device 0 and outlives the backend (destroyed below).
    let eb = unsafe { HipBackend::on_stream(0, s) }.unwrap();
    assert_eq!(eb.compute_stream(), s);
    assert_eq!(eb.engine_stream(), Some(s));
    let f = kernel_formats()[0];
    let n_blocks = 8192;
    let (src, values) = blocks_and_reference(f, n_blocks, 23);
    let expected = cpu::encode_as(&values, OutputDType::F32);
    let read_on_engine_stream = |buf: &quant_gpu::Buffer| -> Vec<u8> {
        let mut host = vec![0u8; expected.len()];
        // SAFETY: `buf` is alive; the copy is waited for before `host` is read.
        unsafe {
            hip_ok(
                hip::hipMemcpyDtoHAsync(
                    host.as_mut_ptr().cast(),
                    buf.device_ptr() as usize as _,
                    host.len(),
                    s,
                ),
                "hipMemcpyDtoHAsync on the engine's stream",
            );
            hip_ok(hip::hipStreamSynchronize(s), "hipStreamSynchronize");
        }
        host
    };
    // Synchronous upload, kernel, engine's copy: all in order on `s`.
    let mut dsrc = eb.alloc(src.len()).unwrap();
    eb.upload(&src, &mut dsrc).unwrap();
    let mut out = eb.alloc(expected.len()).unwrap();
    eb.dequantize(
        f.kernel().unwrap(),
        &dsrc,
        n_blocks as u64,
        &mut out,
        OutputDType::F32,
    )
    .unwrap();
    assert!(same_values(
        OutputDType::F32,
        &expected,
        &read_on_engine_stream(&out)
    ));
    // The pipeline's way: copy on the backend's copy stream, the kernel on `s` waits for it.
    let mut host = eb.alloc_host(src.len()).unwrap();
    host.as_mut_slice().unwrap().copy_from_slice(&src);
    let mut ring = eb.alloc(src.len()).unwrap();
    let mut out2 = eb.alloc(expected.len()).unwrap();
    eb.upload_async(Queue::Copy, &mut host, 0..src.len(), &mut ring, 0)
        .unwrap();
    let copied = eb.record(Queue::Copy).unwrap();
    eb.wait_fence(Queue::Compute, &copied).unwrap();
    eb.dequantize_at(
        Queue::Compute,
        f.kernel().unwrap(),
        &ring,
        0,
        n_blocks as u64,
        &mut out2,
        0,
        OutputDType::F32,
    )
    .unwrap();
    assert!(same_values(
        OutputDType::F32,
        &expected,
        &read_on_engine_stream(&out2)
    ));
    drop((dsrc, out, ring, out2, host));
    drop(eb);
    // SAFETY: `s` is still the engine's: alive and idle after the backend is gone.
    unsafe {
        hip_ok(hip::hipStreamQuery(s), "hipStreamQuery after the backend");
        hip_ok(hip::hipStreamDestroy(s), "hipStreamDestroy by the engine");
    }

    // SAFETY: the null stream of device 0 always exists.
    let nb = unsafe { HipBackend::on_stream(0, std::ptr::null_mut()) }.unwrap();
    assert!(nb.compute_stream().is_null());
    assert_eq!(nb.engine_stream(), Some(std::ptr::null_mut()));
    let mut buf = nb.alloc(4096).unwrap();
    nb.fill(&mut buf, 0x3C).unwrap();
    let mut got = vec![0u8; 4096];
    nb.download(&buf, &mut got).unwrap();
    assert!(got.iter().all(|&x| x == 0x3C));
    for sentinel in [1usize, 2] {
        // SAFETY: refused before the handle is used.
        assert!(unsafe { HipBackend::on_stream(0, sentinel as hip::hipStream_t) }.is_err());
    }
}
