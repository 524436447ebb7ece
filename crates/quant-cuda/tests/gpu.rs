//! GPU tests of the CUDA backend and the format kernels against the CPU references.
//!
//! Gate (`quant_gpu::testing`, the switch of every GPU suite): with `QUANTFORGE_GPU_TESTS=1` a
//! missing GPU fails every test loudly; without it (or with `QUANTFORGE_GPU_KIND=hip`) each
//! test prints a `SKIPPED:` line on stderr (visible even though libtest captures output) and
//! returns (CI has no GPU). Run them one at a time (`--test-threads=1`): several allocate
//! gigabytes.

use std::sync::{Arc, Barrier, OnceLock};

use quant_core::cpu::{self, CpuPath};
use quant_core::random_bytes;
use quant_core::{GgmlType, OutputDType, QuantFormat};
use quant_cuda::CudaBackend;
use quant_gpu::testing::{expect_device, gpu_tests_enabled};
use quant_gpu::{Backend, DeviceKind, GpuError, Queue};
use rayon::prelude::*;

// Link the format crates so that their registrations exist.
use quant_q4_0 as _;
use quant_q4k as _;
use quant_q6k as _;
use quant_q8_0 as _;

/// Byte written over every output before a launch: as f32 (0x7B7B7B7B), f16 and bf16 (0x7B7B)
/// it is a finite number, so an element left unwritten never passes for a NaN.
const POISON: u8 = 0x7B;

/// The shared backend on device 0; panics (fails the test) when the GPU tests are enabled but
/// no device can be opened.
fn backend(test: &str) -> Option<&'static CudaBackend> {
    if !gpu_tests_enabled(DeviceKind::Cuda, test) {
        return None;
    }
    static BACKEND: OnceLock<CudaBackend> = OnceLock::new();
    Some(BACKEND.get_or_init(|| {
        let b = expect_device(DeviceKind::Cuda, CudaBackend::new(0));
        eprintln!(
            "device: {} nvrtc {:?}",
            b.info(),
            CudaBackend::nvrtc_version()
        );
        b
    }))
}

fn format(ty: GgmlType) -> &'static dyn QuantFormat {
    quant_core::lookup(ty).unwrap_or_else(|| panic!("{ty} is not registered"))
}

/// The formats this backend suite launches: the three hand-written kernels and one on the shared
/// skeleton of `qf_portability.h` (every format's kernels are held to the CPU by
/// `tests/gpu_formats.rs`, through the `Backend` trait; this file tests the CUDA backend).
const FORMATS: [GgmlType; 4] = [
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
];

/// f16 scales worth forcing: infinities, NaNs (quiet and signalling), subnormals, zeros, max.
const SPECIAL_F16: [u16; 12] = [
    0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE37, 0x0001, 0x83FF, 0x0200, 0x0000, 0x8000, 0x7BFF, 0xFBFF,
];

/// Random blocks; about one block in eight gets a special value in each of its scales.
fn random_blocks(ty: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let bb = format(ty).geometry().block_bytes;
    let mut src = random_bytes(n_blocks * bb, seed);
    let picks = random_bytes(n_blocks * 2, seed ^ 0xABCD);
    for (i, block) in src.chunks_exact_mut(bb).enumerate() {
        for (k, &off) in format(ty).f16_scale_offsets().iter().enumerate() {
            let p = picks[2 * i + k % 2];
            if p % 8 == 0 {
                let h = SPECIAL_F16[(p as usize / 8) % SPECIAL_F16.len()];
                block[off..off + 2].copy_from_slice(&h.to_le_bytes());
            }
        }
    }
    src
}

fn is_nan_bits(dtype: OutputDType, bits: u32) -> bool {
    match dtype {
        OutputDType::F32 => f32::from_bits(bits).is_nan(),
        OutputDType::F16 => bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0,
        OutputDType::Bf16 => bits & 0x7F80 == 0x7F80 && bits & 0x007F != 0,
    }
}

/// Compares device output bytes with the expected bytes of `dtype`: equal bits, or NaN on both
/// sides. Returns the number of mismatching elements and describes the first few.
fn compare(dtype: OutputDType, expected: &[u8], got: &[u8], what: &str) -> usize {
    assert_eq!(expected.len(), got.len(), "{what}: lengths");
    let size = dtype.size();
    let read = |b: &[u8]| -> u32 {
        if size == 4 {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u16::from_le_bytes([b[0], b[1]]) as u32
        }
    };
    const CHUNK: usize = 1 << 16;
    let bad: Vec<(usize, u32, u32, usize)> = expected
        .par_chunks(CHUNK * size)
        .zip(got.par_chunks(CHUNK * size))
        .enumerate()
        .filter_map(|(c, (e, g))| {
            let mut count = 0usize;
            let mut first = None;
            for (i, (eb, gb)) in e.chunks_exact(size).zip(g.chunks_exact(size)).enumerate() {
                let (x, y) = (read(eb), read(gb));
                if x != y && !(is_nan_bits(dtype, x) && is_nan_bits(dtype, y)) {
                    count += 1;
                    first.get_or_insert((c * CHUNK + i, x, y));
                }
            }
            first.map(|(i, x, y)| (i, x, y, count))
        })
        .collect();
    let total: usize = bad.iter().map(|b| b.3).sum();
    for &(i, x, y, _) in bad.iter().take(5) {
        eprintln!("{what}: element {i}: expected {x:#x}, device wrote {y:#x}");
    }
    total
}

/// Runs `ty`'s kernel on `src` for each output type, poisoning the output first, and checks
/// every element against `cpu_f32` (the CPU result): f32 bit for bit, f16/bf16 against
/// `encode_as`. `grid` caps the number of groups launched.
fn check_all_dtypes(
    be: &CudaBackend,
    ty: GgmlType,
    src: &[u8],
    cpu_f32: &[f32],
    grid: Option<u32>,
    what: &str,
) {
    let f = format(ty);
    let g = f.geometry();
    let n_blocks = src.len() / g.block_bytes;
    let kernel = f.kernel().expect("format has a kernel");
    let mut dsrc = be.alloc(src.len()).unwrap();
    be.upload(src, &mut dsrc).unwrap();
    for dtype in OutputDType::ALL {
        let expected = cpu::encode_as(cpu_f32, dtype);
        let mut ddst = be.alloc(expected.len()).unwrap();
        be.fill(&mut ddst, POISON).unwrap();
        be.dequantize_with_grid(kernel, &dsrc, n_blocks as u64, &mut ddst, dtype, grid)
            .unwrap();
        let mut got = vec![0u8; expected.len()];
        be.download(&ddst, &mut got).unwrap();
        let bad = compare(dtype, &expected, &got, &format!("{what} {dtype}"));
        assert_eq!(bad, 0, "{what} {dtype}: {bad} elements differ");
    }
}

fn cpu_reference(ty: GgmlType, src: &[u8], path: CpuPath) -> Vec<f32> {
    let f = format(ty);
    let n = cpu::elements_in(f, src.len()).unwrap();
    let mut out = vec![0f32; n];
    cpu::dequantize(f, src, &mut out, path).unwrap();
    out
}

#[test]
fn device_info_is_read_from_the_device() {
    let Some(be) = backend("device_info_is_read_from_the_device") else {
        return;
    };
    let info = be.info();
    assert!(!info.name.is_empty());
    assert!(
        info.arch.starts_with("sm_") && info.arch.len() >= 5,
        "{}",
        info.arch
    );
    assert!(info.warp_size == 32 || info.warp_size == 64);
    assert!(info.multiprocessors > 0);
    let mem = be.mem_info().unwrap();
    assert_eq!(mem.total, info.total_memory);
    assert!(mem.free > 0 && mem.free <= mem.total);
    assert!(quant_cuda::device_count().unwrap() >= 1);
}

#[test]
fn upload_download_fill_copy_round_trip() {
    let Some(be) = backend("upload_download_fill_copy_round_trip") else {
        return;
    };
    // Small (direct), just over one staging chunk, and several chunks with an odd tail.
    for (k, len) in [1usize, 4097, (16 << 20) + 3, (80 << 20) + 12345]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(len, 100 + k as u64);
        let mut a = be.alloc(len).unwrap();
        be.upload(&data, &mut a).unwrap();
        let mut back = vec![0u8; len];
        be.download(&a, &mut back).unwrap();
        assert!(back == data, "round trip of {len} bytes");
        let mut b = be.alloc(len).unwrap();
        be.fill(&mut b, 0xC3).unwrap();
        be.download(&b, &mut back).unwrap();
        assert!(back.iter().all(|&x| x == 0xC3), "fill of {len} bytes");
        be.copy(&a, &mut b).unwrap();
        be.download(&b, &mut back).unwrap();
        assert!(back == data, "copy of {len} bytes");
    }
    // Size errors, not panics.
    let mut small = be.alloc(8).unwrap();
    assert!(matches!(
        be.upload(&[0u8; 9], &mut small),
        Err(GpuError::BufferSize { .. })
    ));
    let mut big = vec![0u8; 9];
    assert!(matches!(
        be.download(&small, &mut big),
        Err(GpuError::BufferSize { .. })
    ));
}

#[test]
fn allocation_failure_is_out_of_memory() {
    let Some(be) = backend("allocation_failure_is_out_of_memory") else {
        return;
    };
    let wanted = (be.info().total_memory as usize).saturating_mul(4);
    match be.alloc(wanted) {
        Err(GpuError::OutOfMemory {
            wanted: w, total, ..
        }) => {
            assert_eq!(w, wanted as u64);
            assert_eq!(total, be.info().total_memory);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
}

#[test]
fn odd_sizes_and_small_grids() {
    let Some(be) = backend("odd_sizes_and_small_grids") else {
        return;
    };
    for ty in FORMATS {
        // One block, a few primes (around and past one group of each kernel).
        for (k, n) in [1usize, 3, 17, 127, 131, 65_537].into_iter().enumerate() {
            let src = random_blocks(ty, n, 0x2000 + k as u64);
            let cpu_f32 = cpu_reference(ty, &src, CpuPath::Reference);
            check_all_dtypes(be, ty, &src, &cpu_f32, None, &format!("{ty} {n} blocks"));
            // The same with fewer groups than the work needs: the kernels stride.
            for grid in [1u32, 3] {
                check_all_dtypes(
                    be,
                    ty,
                    &src,
                    &cpu_f32,
                    Some(grid),
                    &format!("{ty} {n} blocks, grid {grid}"),
                );
            }
        }
    }
}

#[test]
fn zero_blocks_write_nothing() {
    let Some(be) = backend("zero_blocks_write_nothing") else {
        return;
    };
    let f = format(GgmlType::Q4_K);
    let src = be.alloc(0).unwrap();
    let mut dst = be.alloc(64).unwrap();
    be.fill(&mut dst, POISON).unwrap();
    be.dequantize(f.kernel().unwrap(), &src, 0, &mut dst, OutputDType::F32)
        .unwrap();
    let mut got = vec![0u8; 64];
    be.download(&dst, &mut got).unwrap();
    assert!(got.iter().all(|&b| b == POISON));
}

#[test]
fn launch_checks_buffer_sizes() {
    let Some(be) = backend("launch_checks_buffer_sizes") else {
        return;
    };
    let f = format(GgmlType::Q6_K);
    let k = f.kernel().unwrap();
    let src = be.alloc(210 * 4 - 1).unwrap();
    let mut dst = be.alloc(256 * 4 * 4).unwrap();
    let e = be
        .dequantize(k, &src, 4, &mut dst, OutputDType::F32)
        .unwrap_err();
    assert!(matches!(e, GpuError::BufferSize { need: 840, .. }), "{e}");
    let src = be.alloc(210 * 4).unwrap();
    be.dequantize(k, &src, 4, &mut dst, OutputDType::F32)
        .unwrap();
    let e = be
        .dequantize(k, &src, 5, &mut dst, OutputDType::F16)
        .unwrap_err();
    assert!(matches!(e, GpuError::BufferSize { need: 1050, .. }), "{e}");
    let e = be
        .dequantize(k, &src, 4, &mut dst, OutputDType::F32)
        .and_then(|()| {
            let mut small = be.alloc(256 * 4 * 4 - 1)?;
            be.dequantize(k, &src, 4, &mut small, OutputDType::F32)
        })
        .unwrap_err();
    assert!(matches!(e, GpuError::BufferSize { need: 4096, .. }), "{e}");
}

#[test]
fn concurrent_first_use_compiles_once() {
    if !gpu_tests_enabled(DeviceKind::Cuda, "concurrent_first_use_compiles_once") {
        return;
    }
    // A backend whose module cache no other backend shares: backends of one context share
    // modules when they take kernels from the same place, and no other test takes them from
    // this (empty) folder of prebuilt cubins, so every format compiles with NVRTC, here.
    let prebuilt = tempfile::tempdir().unwrap();
    let be = Arc::new(
        CudaBackend::with_kernel_dir(0, None)
            .expect("CUDA device")
            .with_prebuilt_cubins(prebuilt.path().to_path_buf()),
    );
    let ty = GgmlType::Q4_K;
    let f = format(ty);
    let src = random_blocks(ty, 1000, 0x4000);
    let cpu_f32 = cpu_reference(ty, &src, CpuPath::Reference);
    let expected = cpu::encode_as(&cpu_f32, OutputDType::F32);
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (be, barrier, src) = (be.clone(), barrier.clone(), src.clone());
            std::thread::spawn(move || {
                let mut dsrc = be.alloc(src.len()).unwrap();
                be.upload(&src, &mut dsrc).unwrap();
                let mut ddst = be.alloc(1000 * 256 * 4).unwrap();
                be.fill(&mut ddst, POISON).unwrap();
                barrier.wait();
                be.dequantize(
                    f.kernel().unwrap(),
                    &dsrc,
                    1000,
                    &mut ddst,
                    OutputDType::F32,
                )
                .unwrap();
                let mut got = vec![0u8; 1000 * 256 * 4];
                be.download(&ddst, &mut got).unwrap();
                got
            })
        })
        .collect();
    for h in handles {
        let got = h.join().expect("thread panicked");
        assert_eq!(compare(OutputDType::F32, &expected, &got, "concurrent"), 0);
    }
    assert_eq!(
        be.modules_built(),
        1,
        "16 racing first uses must build one module"
    );
}

#[test]
fn cubins_from_a_kernel_dir() {
    let Some(be) = backend("cubins_from_a_kernel_dir") else {
        return;
    };
    let ty = GgmlType::Q6_K;
    let f = format(ty);
    let spec = f.kernel().unwrap();
    let arch = be.info().arch.clone();
    let dir = tempfile::tempdir().unwrap();

    // Missing file.
    let missing = CudaBackend::with_kernel_dir(0, Some(dir.path().to_path_buf())).unwrap();
    let e = missing.prepare_kernel(spec).unwrap_err();
    let want = CudaBackend::cubin_path(dir.path(), spec.format, &arch);
    assert!(
        matches!(&e, GpuError::CodeObject { path, .. } if *path == want),
        "{e}"
    );

    // Broken file: not ELF, then a truncated real cubin.
    std::fs::create_dir_all(want.parent().unwrap()).unwrap();
    std::fs::write(&want, b"this is not a cubin").unwrap();
    let e = missing.prepare_kernel(spec).unwrap_err();
    assert!(
        matches!(&e, GpuError::CodeObject { path, .. } if *path == want),
        "{e}"
    );
    let cubin = be.compile_cubin(spec).unwrap();
    std::fs::write(&want, &cubin[..cubin.len() / 3]).unwrap();
    let e = missing.prepare_kernel(spec).unwrap_err();
    assert!(
        matches!(&e, GpuError::CodeObject { path, .. } if *path == want),
        "{e}"
    );
    assert_eq!(missing.modules_built(), 0);

    // A whole cubin for another SM version is refused before the driver sees it.
    let sm = CudaBackend::check_cubin(&cubin).unwrap();
    assert_eq!(format!("sm_{sm}"), arch);
    let wrong_sm: u32 = if sm / 10 == 8 { 90 } else { 80 };
    let mut wrong = cubin.clone();
    let mut flags = u32::from_le_bytes(wrong[48..52].try_into().unwrap());
    flags = if wrong[8] >= 8 {
        (flags & !0xff00) | (wrong_sm << 8)
    } else {
        (flags & !0xff) | wrong_sm
    };
    wrong[48..52].copy_from_slice(&flags.to_le_bytes());
    assert_eq!(CudaBackend::check_cubin(&wrong).unwrap(), wrong_sm);
    std::fs::write(&want, &wrong).unwrap();
    let e = missing.prepare_kernel(spec).unwrap_err();
    assert!(
        matches!(&e, GpuError::CodeObject { path, reason } if *path == want
            && reason.contains(&format!("built for sm_{wrong_sm}"))),
        "{e}"
    );
    assert_eq!(missing.modules_built(), 0);

    // A good cubin loads and computes the same bits.
    std::fs::write(&want, &cubin).unwrap();
    let from_dir = CudaBackend::with_kernel_dir(0, Some(dir.path().to_path_buf())).unwrap();
    let src = random_blocks(ty, 257, 0x5000);
    let cpu_f32 = cpu_reference(ty, &src, CpuPath::Reference);
    check_all_dtypes(
        &from_dir,
        ty,
        &src,
        &cpu_f32,
        None,
        "Q6_K from a cubin file",
    );
    assert_eq!(from_dir.modules_built(), 1);
}

#[test]
fn launches_at_offsets_match_whole_buffers_and_need_alignment() {
    let Some(be) = backend("launches_at_offsets_match_whole_buffers_and_need_alignment") else {
        return;
    };
    let ty = GgmlType::Q4_K;
    let f = format(ty);
    let k = f.kernel().unwrap();
    let n = 37usize;
    let src = random_blocks(ty, n, 0x0FF5);
    let expected = cpu::encode_as(
        &cpu_reference(ty, &src, CpuPath::Reference),
        OutputDType::F16,
    );
    let (src_off, dst_off) = (4096usize, 256usize);
    let mut dsrc = be.alloc(src_off + src.len()).unwrap();
    be.upload_at(&src, &mut dsrc, src_off).unwrap();
    let mut ddst = be.alloc(dst_off + expected.len()).unwrap();
    be.fill(&mut ddst, POISON).unwrap();
    be.dequantize_at(
        Queue::Compute,
        k,
        &dsrc,
        src_off,
        n as u64,
        &mut ddst,
        dst_off,
        OutputDType::F16,
    )
    .unwrap();
    let mut got = vec![0u8; dst_off + expected.len()];
    be.download(&ddst, &mut got).unwrap();
    assert!(
        got[..dst_off].iter().all(|&b| b == POISON),
        "wrote before the offset"
    );
    assert_eq!(
        compare(OutputDType::F16, &expected, &got[dst_off..], "offsets"),
        0
    );

    for (so, d_o) in [(src_off + 8, dst_off), (src_off, dst_off + 2)] {
        let e = be
            .dequantize_at(
                Queue::Compute,
                k,
                &dsrc,
                so,
                1,
                &mut ddst,
                d_o,
                OutputDType::F16,
            )
            .unwrap_err();
        assert!(matches!(e, GpuError::Misaligned { align: 16, .. }), "{e}");
    }
    let e = be
        .dequantize_at(
            Queue::Compute,
            k,
            &dsrc,
            src_off + 16,
            n as u64,
            &mut ddst,
            dst_off,
            OutputDType::F16,
        )
        .unwrap_err();
    assert!(matches!(e, GpuError::BufferSize { .. }), "{e}");
}

#[test]
fn a_lane_runs_its_copy_then_its_kernel_in_order() {
    let Some(be) = backend("a_lane_runs_its_copy_then_its_kernel_in_order") else {
        return;
    };
    let ty = GgmlType::Q4_K;
    let k = format(ty).kernel().unwrap();
    let n = 4096usize;
    let expected = |src: &[u8]| {
        cpu::encode_as(
            &cpu_reference(ty, src, CpuPath::Reference),
            OutputDType::F16,
        )
    };
    // Eight lanes at once, each copying its own blocks from pinned memory and expanding them,
    // with no fence between the copy and the kernel: the lane orders them.
    let mut outs = Vec::new();
    let mut hosts = Vec::new();
    for lane in 0..8u16 {
        let src = random_blocks(ty, n, 0x1A4E + u64::from(lane));
        let mut host = be.alloc_host(src.len()).unwrap();
        host.as_mut_slice().unwrap().copy_from_slice(&src);
        let mut dsrc = be.alloc(src.len()).unwrap();
        let mut ddst = be.alloc(expected(&src).len()).unwrap();
        be.fill(&mut ddst, POISON).unwrap();
        be.synchronize().unwrap();
        let q = Queue::Lane(lane);
        be.upload_async(q, &mut host, 0..src.len(), &mut dsrc, 0)
            .unwrap();
        be.dequantize_at(q, k, &dsrc, 0, n as u64, &mut ddst, 0, OutputDType::F16)
            .unwrap();
        outs.push((src, dsrc, ddst));
        hosts.push(host);
    }
    be.synchronize().unwrap();
    for (lane, (src, _, ddst)) in outs.iter().enumerate() {
        let want = expected(src);
        let mut got = vec![0u8; want.len()];
        be.download(ddst, &mut got).unwrap();
        let what = format!("lane {lane}");
        assert_eq!(compare(OutputDType::F16, &want, &got, &what), 0);
    }
}
