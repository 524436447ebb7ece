//! # quant-cuda
//!
//! quantforge's NVIDIA backend: [`CudaBackend`] implements [`quant_gpu::Backend`] on the CUDA
//! driver API through `cudarc`, loaded at run time (`dynamic-loading`): a binary built with this
//! crate starts on machines without CUDA, where [`device_count`] and [`CudaBackend::new`] return
//! [`GpuError::NoDevice`].
//!
//! The backend is quant-gpu's [`GpuBackend`] (every check, launch plan, module cache, error
//! shape and event timing of a GPU backend, written once for CUDA and HIP) over this crate's
//! driver: the CUDA calls themselves and where kernels come from.
//!
//! * Kernels are compiled on first use from each format's embedded `kernel.hip` with NVRTC, for
//!   the device's own architecture (`sm_XX` cubin, `--fmad=false`, the portability header passed
//!   as a named header). If `QUANTFORGE_CUDA_KERNEL_DIR` is set, `<dir>/<format>/<sm_XX>.cubin`
//!   is loaded instead; shipped cubins are used where one fits the device
//!   ([`CudaBackend::with_prebuilt_cubins`]). A cubin's ELF is checked with
//!   [`quant_gpu::code_object`] and its `sm_XX` against the device's compute capability
//!   ([`check_cubin_arch`]) before the driver sees it.
//! * Modules are shared by every backend of one CUDA context that takes kernels from the same
//!   place (backends on several engine streams of one context build each format once), and
//!   concurrent first uses build once.
//! * Launches are checked and sized by [`quant_gpu::plan_launch`] with the device's own limits.
//! * Uploads and large downloads go through two reused pinned staging buffers, so that the host
//!   copy of one chunk overlaps the DMA of the other.
//! * The pipeline primitives of [`Backend`] are real: page-locked [`HostBuffer`]s, a second
//!   stream for copies ([`Queue::Copy`]), events as [`Fence`]s, and copies and kernel launches
//!   at byte offsets; [`Backend::upload_pageable`] copies straight from ordinary memory.
//! * An engine hands over its own context or stream ([`CudaBackend::on_context`],
//!   [`CudaBackend::on_stream`]; [`cudarc`] is re-exported so the types are the engine's), and
//!   takes tensors back by pointer: [`Backend::wrap_device_memory`] checks the engine's memory
//!   with the driver, [`Backend::make_stream_wait`] orders the engine's other streams.
//! * All `unsafe` code lives in one private module (`ffi`); everything above it is safe.
//!
//! `quant_gpu::bench` times kernels against a device-to-device copy with device events.
//!
//! [`HostBuffer`]: quant_gpu::HostBuffer
//! [`Queue::Copy`]: quant_gpu::Queue::Copy
//! [`Fence`]: quant_gpu::Fence
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod cubin;
mod driver;
#[allow(unsafe_code)]
mod ffi;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `cudarc` this backend is built on, re-exported so that an engine names the same
/// `CudaContext` and `CudaStream` types it takes ([`CudaBackend::on_stream`]).
pub use cudarc;
use cudarc::driver::{CudaContext, CudaStream};
use quant_gpu::driver::{DelegateBackend, GpuBackend};
use quant_gpu::{Backend, Buffer, DeviceKind, GpuError, KernelSpec, OutputDType};

pub use cubin::{best_prebuilt_cubin, check_cubin_arch};
use driver::{CudaDriver, KernelSource};

/// Environment variable naming a folder of cubins built ahead of time:
/// `<dir>/<format>/<sm_XX>.cubin` (for example `target/kernels/q4_k/sm_90.cubin`).
pub const KERNEL_DIR_ENV: &str = "QUANTFORGE_CUDA_KERNEL_DIR";

/// Number of CUDA devices, or [`GpuError::NoDevice`] when the driver is missing or reports
/// none usable. Never panics.
pub fn device_count() -> Result<usize, GpuError> {
    ffi::device_count().map_err(|e| no_device(0, e.message))
}

/// One NVIDIA GPU through the CUDA driver API: a [`Backend`] (through [`DelegateBackend`]).
#[derive(Debug)]
pub struct CudaBackend {
    gpu: GpuBackend<CudaDriver>,
}

impl DelegateBackend for CudaBackend {
    fn delegate(&self) -> &dyn Backend {
        &self.gpu
    }
}

fn no_device(ordinal: usize, reason: String) -> GpuError {
    GpuError::NoDevice {
        kind: DeviceKind::Cuda,
        ordinal,
        reason,
    }
}

fn kernel_source_from_env() -> KernelSource {
    match std::env::var_os(KERNEL_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => KernelSource::Dir(PathBuf::from(dir)),
        None => KernelSource::Nvrtc,
    }
}

impl CudaBackend {
    /// Opens CUDA device `ordinal` (its primary context, which the CUDA runtime and so
    /// PyTorch and CuPy share). Reads [`KERNEL_DIR_ENV`] once, here.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        let device = ffi::Device::open(ordinal).map_err(|e| no_device(ordinal, e.message))?;
        Self::from_device(device, ordinal, kernel_source_from_env())
    }

    /// Opens CUDA device `ordinal`, loading cubins from `kernel_dir` (as
    /// [`KERNEL_DIR_ENV`] would) or, with `None`, compiling them with NVRTC.
    pub fn with_kernel_dir(ordinal: usize, kernel_dir: Option<PathBuf>) -> Result<Self, GpuError> {
        let device = ffi::Device::open(ordinal).map_err(|e| no_device(ordinal, e.message))?;
        let source = kernel_dir.map_or(KernelSource::Nvrtc, KernelSource::Dir);
        Self::from_device(device, ordinal, source)
    }

    /// Opens the device of an engine's cudarc context, with streams of this backend's own.
    /// Pointers of the tensors it loads are valid in that context. Reads [`KERNEL_DIR_ENV`].
    pub fn on_context(ctx: Arc<CudaContext>) -> Result<Self, GpuError> {
        let ordinal = ctx.ordinal();
        let device = ffi::Device::on_context(ctx).map_err(|e| no_device(ordinal, e.message))?;
        Self::from_device(device, ordinal, kernel_source_from_env())
    }

    /// Opens the device of an engine's cudarc stream and queues every kernel and every
    /// synchronous copy on that stream, so that the engine's later work on it is ordered after
    /// the loads without a synchronisation. (The pipelined whole-model load also copies on a
    /// second stream of its own; its kernels, on the engine's stream, wait for those copies, and
    /// [`Backend::make_stream_wait`] orders any other stream.) Backends on several streams of
    /// one context share their modules. Reads [`KERNEL_DIR_ENV`].
    pub fn on_stream(stream: Arc<CudaStream>) -> Result<Self, GpuError> {
        let ordinal = stream.context().ordinal();
        let device = ffi::Device::on_stream(stream).map_err(|e| no_device(ordinal, e.message))?;
        Self::from_device(device, ordinal, kernel_source_from_env())
    }

    fn from_device(
        device: ffi::Device,
        ordinal: usize,
        source: KernelSource,
    ) -> Result<Self, GpuError> {
        let driver = CudaDriver::new(device, ordinal, source).map_err(|e| no_device(ordinal, e))?;
        Ok(CudaBackend {
            gpu: GpuBackend::new(driver),
        })
    }

    /// The cudarc context this backend works in (the device's primary context unless the
    /// engine gave another).
    pub fn context(&self) -> &Arc<CudaContext> {
        self.gpu.driver().device.context()
    }

    /// The engine's stream, when opened with [`CudaBackend::on_stream`].
    pub fn engine_stream(&self) -> Option<&Arc<CudaStream>> {
        self.gpu.driver().device.engine_stream()
    }

    /// The raw `CUstream` on which kernels are queued (the engine's, with
    /// [`CudaBackend::on_stream`]).
    pub fn compute_stream(&self) -> cudarc::driver::sys::CUstream {
        self.gpu.driver().device.compute_stream()
    }

    /// Uses the cubins under `dir` (`<dir>/<format>/sm_XX.cubin`, as `cargo xtask
    /// build-kernels` writes them; the Python wheel ships them) where one runs on this device:
    /// per format the newest `sm_XX` of the device's major version not above its minor version
    /// ([`best_prebuilt_cubin`]: an sm_80 cubin serves sm_86 and sm_89 devices); formats with
    /// none, and devices of another generation, are compiled with NVRTC as without this. A set
    /// [`KERNEL_DIR_ENV`] (or [`CudaBackend::with_kernel_dir`]) takes precedence.
    pub fn with_prebuilt_cubins(self, dir: PathBuf) -> Self {
        let gpu = self.gpu.with_driver(|d| {
            if !matches!(d.source, KernelSource::Dir(_)) {
                d.source = KernelSource::Prebuilt(dir);
            }
        });
        CudaBackend { gpu }
    }

    /// How many kernel modules this backend has compiled or loaded so far (one per format that
    /// no other backend of its context and kernel source had loaded).
    pub fn modules_built(&self) -> usize {
        self.gpu.modules_built()
    }

    /// [`Backend::dequantize`] with at most `max_groups` groups launched (the kernels stride
    /// over the rest). `None` launches one group per `blocks_per_group` blocks.
    pub fn dequantize_with_grid(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        max_groups: Option<u32>,
    ) -> Result<(), GpuError> {
        self.gpu
            .dequantize_with_grid(kernel, src, n_blocks, dst, dtype, max_groups)
    }

    /// Path of a format's cubin for this device under `dir`: `<dir>/<format>/<sm_XX>.cubin`.
    pub fn cubin_path(dir: &Path, format: &str, arch: &str) -> PathBuf {
        cubin::path(dir, format, arch)
    }

    /// NVRTC options used for every kernel: the device's real architecture (so that NVRTC emits
    /// a cubin), no contraction into FMA, IEEE division and square root, no flush to zero.
    pub fn nvrtc_options(arch: &str) -> Vec<String> {
        cubin::nvrtc_options(arch)
    }

    /// Compiles `spec`'s source with NVRTC for this device and returns the cubin (what
    /// [`KERNEL_DIR_ENV`] expects to find ahead of time).
    pub fn compile_cubin(&self, spec: &KernelSpec) -> Result<Vec<u8>, GpuError> {
        self.gpu.driver().compile_cubin(spec)
    }

    /// NVRTC's version, `(major, minor)`, if the library is installed.
    pub fn nvrtc_version() -> Option<(i32, i32)> {
        ffi::nvrtc_version().ok()
    }

    /// Checks that `image` is a complete little-endian ELF64 file for NVIDIA GPUs: every
    /// header, section and segment it declares lies inside it ([`Elf64::parse`](quant_gpu::code_object::Elf64::parse)). The driver
    /// trusts these offsets, so a truncated or damaged file must be refused before it is handed
    /// over. Returns the SM version it was built for.
    pub fn check_cubin(image: &[u8]) -> Result<u32, String> {
        cubin::check(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_means_no_device_not_a_panic() {
        // On a machine with a driver this must succeed; without one it must be NoDevice.
        match device_count() {
            // With a driver, an ordinal past the last device is NoDevice, not a panic.
            Ok(n) => {
                assert!(ffi::driver_present());
                let e = CudaBackend::new(n).unwrap_err();
                assert!(matches!(e, GpuError::NoDevice { .. }), "{e}");
            }
            Err(GpuError::NoDevice { kind, .. }) => assert_eq!(kind, DeviceKind::Cuda),
            Err(e) => panic!("unexpected error {e}"),
        }
        if !ffi::driver_present() {
            let e = CudaBackend::new(0).unwrap_err();
            assert!(matches!(e, GpuError::NoDevice { ordinal: 0, .. }), "{e}");
        }
    }

    #[test]
    fn out_of_range_ordinal_is_no_device() {
        let e = CudaBackend::new(1 << 20).unwrap_err();
        assert!(
            matches!(e, GpuError::NoDevice { ordinal, .. } if ordinal == 1 << 20),
            "{e}"
        );
    }

    /// A minimal well-formed ELF64 image for EM_CUDA with one section and one segment.
    fn tiny_elf() -> Vec<u8> {
        let mut e = vec![0u8; 64 + 64 * 2 + 56 + 16];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18..20].copy_from_slice(&190u16.to_le_bytes());
        e[32..40].copy_from_slice(&192u64.to_le_bytes()); // phoff
        e[40..48].copy_from_slice(&64u64.to_le_bytes()); // shoff
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[58..60].copy_from_slice(&64u16.to_le_bytes());
        e[60..62].copy_from_slice(&2u16.to_le_bytes());
        // Section 1: 16 bytes of PROGBITS at 248.
        let s1 = 64 + 64;
        e[s1 + 4..s1 + 8].copy_from_slice(&1u32.to_le_bytes());
        e[s1 + 24..s1 + 32].copy_from_slice(&248u64.to_le_bytes());
        e[s1 + 32..s1 + 40].copy_from_slice(&16u64.to_le_bytes());
        // Segment 0: the same 16 bytes.
        e[192 + 8..192 + 16].copy_from_slice(&248u64.to_le_bytes());
        e[192 + 32..192 + 40].copy_from_slice(&16u64.to_le_bytes());
        e
    }

    #[test]
    fn cubin_check_refuses_truncated_and_foreign_files() {
        let good = tiny_elf();
        CudaBackend::check_cubin(&good).unwrap();
        for cut in [0, 3, 63, 100, 200, 250, good.len() - 1] {
            assert!(
                CudaBackend::check_cubin(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut amd = good.clone();
        amd[18..20].copy_from_slice(&224u16.to_le_bytes()); // EM_AMDGPU
        assert!(CudaBackend::check_cubin(&amd)
            .unwrap_err()
            .contains("machine 224"));
        let mut nobits = good.clone();
        nobits[128 + 4..128 + 8].copy_from_slice(&8u32.to_le_bytes());
        nobits[128 + 32..128 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        nobits[192 + 32..192 + 40].copy_from_slice(&0u64.to_le_bytes());
        CudaBackend::check_cubin(&nobits).unwrap();
        let mut huge = good.clone();
        huge[128 + 24..128 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(CudaBackend::check_cubin(&huge).is_err());
        assert!(CudaBackend::check_cubin(b"this is not a cubin at all").is_err());
    }

    #[test]
    fn cubin_arch_must_match_the_device() {
        check_cubin_arch(90, (9, 0)).unwrap();
        check_cubin_arch(80, (8, 0)).unwrap();
        // Binary compatible: same major, higher minor on the device.
        check_cubin_arch(80, (8, 6)).unwrap();
        check_cubin_arch(86, (8, 9)).unwrap();
        for (sm, cc) in [
            (80, (9, 0)),
            (90, (8, 0)),
            (86, (8, 0)),
            (90, (10, 0)),
            (0, (9, 0)),
        ] {
            let e = check_cubin_arch(sm, cc).unwrap_err();
            assert!(
                e.contains(&format!("built for sm_{sm}"))
                    && e.contains(&format!("device is sm_{}{}", cc.0, cc.1)),
                "{e}"
            );
        }
    }

    #[test]
    fn cubin_check_reads_the_sm_version() {
        let mut e = tiny_elf();
        e[8] = 8; // EI_ABIVERSION: CUDA 12.8 on
        e[48..52].copy_from_slice(&0x0600_5a04u32.to_le_bytes());
        assert_eq!(CudaBackend::check_cubin(&e).unwrap(), 90);
        e[8] = 7;
        e[48..52].copy_from_slice(&0x0050_0550u32.to_le_bytes());
        assert_eq!(CudaBackend::check_cubin(&e).unwrap(), 80);
    }

    #[test]
    fn the_newest_compatible_prebuilt_cubin_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "sm_80.cubin",
            "sm_86.cubin",
            "sm_90.cubin",
            "sm_8x.cubin",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let pick = |cc| {
            best_prebuilt_cubin(dir.path(), cc)
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        };
        assert_eq!(pick((8, 0)).as_deref(), Some("sm_80.cubin"));
        assert_eq!(pick((8, 9)).as_deref(), Some("sm_86.cubin"));
        assert_eq!(pick((9, 0)).as_deref(), Some("sm_90.cubin"));
        assert_eq!(
            pick((10, 0)),
            None,
            "another generation compiles with NVRTC"
        );
        assert_eq!(pick((7, 5)), None);
        assert_eq!(
            best_prebuilt_cubin(&dir.path().join("missing"), (9, 0)),
            None
        );
    }

    #[test]
    fn cubin_path_layout() {
        let p = CudaBackend::cubin_path(Path::new("/k"), "q4_k", "sm_90");
        assert_eq!(p, Path::new("/k/q4_k/sm_90.cubin"));
    }

    #[test]
    fn nvrtc_options_forbid_contraction_and_name_a_real_arch() {
        let o = CudaBackend::nvrtc_options("sm_90");
        assert!(o.contains(&"--fmad=false".to_string()));
        assert!(o.contains(&"--ftz=false".to_string()));
        assert!(o.contains(&"--gpu-architecture=sm_90".to_string()));
        assert!(!o
            .iter()
            .any(|x| x.contains("fast-math") || x.contains("compute_")));
    }
}
