//! # quant-cuda
//!
//! quantforge's NVIDIA backend: [`CudaBackend`] implements [`quant_gpu::Backend`] on the CUDA
//! driver API through `cudarc`, loaded at run time (`dynamic-loading`): a binary built with this
//! crate starts on machines without CUDA, where [`device_count`] and [`CudaBackend::new`] return
//! [`GpuError::NoDevice`].
//!
//! * Kernels are compiled on first use from each format's embedded `kernel.hip` with NVRTC, for
//!   the device's own architecture (`sm_XX` cubin, `--fmad=false`, the portability header passed
//!   as a named header), and cached per backend and format; concurrent first uses compile once.
//!   If `QUANTFORGE_CUDA_KERNEL_DIR` is set, `<dir>/<format>/<sm_XX>.cubin` is loaded instead;
//!   its ELF is checked with [`quant_gpu::code_object`] and its `sm_XX` against the device's
//!   compute capability ([`check_cubin_arch`]) before the driver sees it.
//! * Launches are checked and sized by [`quant_gpu::plan_launch`], from the spec's block
//!   geometry.
//! * Uploads and large downloads go through two reused pinned staging buffers, so that the host
//!   copy of one chunk overlaps the DMA of the other.
//! * The pipeline primitives of [`Backend`] are real: page-locked [`HostBuffer`]s, a second
//!   stream for copies ([`Queue::Copy`]), events as [`Fence`]s, and copies and kernel launches
//!   at byte offsets; [`Backend::upload_pageable`] copies straight from ordinary memory.
//! * An engine hands over its own context or stream ([`CudaBackend::on_context`],
//!   [`CudaBackend::on_stream`]; [`cudarc`] is re-exported so the types are the engine's), and
//!   takes tensors back by pointer: [`Backend::wrap_device_memory`] checks the engine's memory
//!   with the driver, [`Backend::make_stream_wait`] orders the engine's other streams.
//! * Kernels come from NVRTC, from a folder of cubins ([`KERNEL_DIR_ENV`]), or from shipped
//!   cubins where one fits the device ([`CudaBackend::with_prebuilt_cubins`]).
//! * All `unsafe` code lives in one private module (`ffi`); everything above it is safe.
//!
//! `quant_gpu::bench` times kernels against a device-to-device copy with device events.
#![warn(missing_docs)]
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ffi;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The `cudarc` this backend is built on, re-exported so that an engine names the same
/// `CudaContext` and `CudaStream` types it takes ([`CudaBackend::on_stream`]).
pub use cudarc;
use cudarc::driver::{CudaContext, CudaStream};
use parking_lot::Mutex;
use quant_gpu::code_object::{Elf64, EM_CUDA};
use quant_gpu::{
    check_region, check_upload, plan_launch, Backend, Buffer, BufferRegion, DeviceInfo, DeviceKind,
    DeviceLimits, Fence, GpuError, HostBuffer, KernelSpec, MemInfo, ModuleCache, OutputDType,
    Queue, RawBuffer,
};

/// Environment variable naming a folder of cubins built ahead of time:
/// `<dir>/<format>/<sm_XX>.cubin` (for example `target/kernels/q4_k/sm_90.cubin`).
pub const KERNEL_DIR_ENV: &str = "QUANTFORGE_CUDA_KERNEL_DIR";

/// Bytes of each of the two pinned staging buffers.
const STAGING_CHUNK: usize = 16 << 20;

/// Transfers up to this size skip the staging buffers.
const DIRECT_LIMIT: usize = 1 << 20;

/// Number of CUDA devices, or [`GpuError::NoDevice`] when the driver is missing or reports
/// none usable. Never panics.
pub fn device_count() -> Result<usize, GpuError> {
    ffi::device_count().map_err(|e| GpuError::NoDevice {
        kind: DeviceKind::Cuda,
        ordinal: 0,
        reason: e.message,
    })
}

/// The three entry points of one format's module.
struct KernelModule {
    f32: ffi::Function,
    f16: ffi::Function,
    bf16: ffi::Function,
}

impl KernelModule {
    fn entry(&self, dtype: OutputDType) -> &ffi::Function {
        match dtype {
            OutputDType::F32 => &self.f32,
            OutputDType::F16 => &self.f16,
            OutputDType::Bf16 => &self.bf16,
        }
    }
}

/// Checks that a cubin built for `sm_<cubin_sm>` runs on a device of compute capability
/// `major.minor`. A cubin runs on devices of its own major version and the same or a higher
/// minor version (CUDA's binary compatibility rule); anything else is refused with a message
/// that names both, rather than leaving the driver to fail with "no kernel image".
pub fn check_cubin_arch(cubin_sm: u32, (major, minor): (u32, u32)) -> Result<(), String> {
    let (c_major, c_minor) = (cubin_sm / 10, cubin_sm % 10);
    if c_major == major && c_minor <= minor {
        return Ok(());
    }
    Err(format!(
        "built for sm_{cubin_sm}, but the device is sm_{major}{minor} (compute capability \
         {major}.{minor}); a cubin runs only on its own major version, at the same or a higher \
         minor version: rebuild it for sm_{major}{minor}"
    ))
}

/// The cubin under `dir` (files `sm_XX.cubin`) that runs on a device of compute capability
/// `major.minor` ([`check_cubin_arch`]) with the highest `XX`, if any.
pub fn best_prebuilt_cubin(dir: &Path, capability: (u32, u32)) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let sm: u32 = name
                .strip_prefix("sm_")?
                .strip_suffix(".cubin")?
                .parse()
                .ok()?;
            check_cubin_arch(sm, capability).ok()?;
            Some((sm, path))
        })
        .max_by_key(|(sm, _)| *sm)
        .map(|(_, path)| path)
}

/// A device allocation of this backend, behind a [`Buffer`].
#[derive(Debug)]
struct CudaBuffer {
    mem: ffi::DevMem,
}

impl RawBuffer for CudaBuffer {
    fn len(&self) -> usize {
        self.mem.len()
    }
    fn device_ptr(&self) -> u64 {
        self.mem.addr()
    }
    fn owns_memory(&self) -> bool {
        self.mem.owned()
    }
    fn release(&mut self) {
        self.mem.release();
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// One NVIDIA GPU through the CUDA driver API.
pub struct CudaBackend {
    device: ffi::Device,
    info: DeviceInfo,
    kernel_dir: Option<PathBuf>,
    /// Cubins shipped beside the program ([`CudaBackend::with_prebuilt_cubins`]): the best one
    /// for this device per format, else NVRTC. Not used when `kernel_dir` is set.
    prebuilt: Option<PathBuf>,
    /// Compute capability `(major, minor)`.
    capability: (u32, u32),
    modules: ModuleCache<&'static str, KernelModule>,
    staging: Mutex<Option<ffi::Staging>>,
    modules_built: AtomicUsize,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("info", &self.info)
            .field("kernel_dir", &self.kernel_dir)
            .field("prebuilt", &self.prebuilt)
            .finish_non_exhaustive()
    }
}

fn no_device(ordinal: usize, reason: String) -> GpuError {
    GpuError::NoDevice {
        kind: DeviceKind::Cuda,
        ordinal,
        reason,
    }
}

fn kernel_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(KERNEL_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn driver_err(op: impl Into<String>) -> impl FnOnce(ffi::FfiError) -> GpuError {
    let op = op.into();
    move |e| GpuError::Driver {
        op,
        reason: e.message,
    }
}

impl CudaBackend {
    /// Opens CUDA device `ordinal` (its primary context, which the CUDA runtime and so
    /// PyTorch and CuPy share). Reads [`KERNEL_DIR_ENV`] once, here.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        Self::with_kernel_dir(ordinal, kernel_dir_from_env())
    }

    /// Opens CUDA device `ordinal`, loading cubins from `kernel_dir` (as
    /// [`KERNEL_DIR_ENV`] would) or, with `None`, compiling them with NVRTC.
    pub fn with_kernel_dir(ordinal: usize, kernel_dir: Option<PathBuf>) -> Result<Self, GpuError> {
        let device = ffi::Device::open(ordinal).map_err(|e| no_device(ordinal, e.message))?;
        Self::from_device(device, ordinal, kernel_dir)
    }

    /// Opens the device of an engine's cudarc context, with streams of this backend's own.
    /// Pointers of the tensors it loads are valid in that context. Reads [`KERNEL_DIR_ENV`].
    pub fn on_context(ctx: Arc<CudaContext>) -> Result<Self, GpuError> {
        let ordinal = ctx.ordinal();
        let device = ffi::Device::on_context(ctx).map_err(|e| no_device(ordinal, e.message))?;
        Self::from_device(device, ordinal, kernel_dir_from_env())
    }

    /// Opens the device of an engine's cudarc stream and queues every kernel and every
    /// synchronous copy on that stream, so that the engine's later work on it is ordered after
    /// the loads without a synchronisation. (The pipelined whole-model load also copies on a
    /// second stream of its own; its kernels, on the engine's stream, wait for those copies, and
    /// [`Backend::make_stream_wait`] orders any other stream.) Reads [`KERNEL_DIR_ENV`].
    pub fn on_stream(stream: Arc<CudaStream>) -> Result<Self, GpuError> {
        let ordinal = stream.context().ordinal();
        let device = ffi::Device::on_stream(stream).map_err(|e| no_device(ordinal, e.message))?;
        Self::from_device(device, ordinal, kernel_dir_from_env())
    }

    /// The cudarc context this backend works in (the device's primary context unless the
    /// engine gave another).
    pub fn context(&self) -> &Arc<CudaContext> {
        self.device.context()
    }

    /// The engine's stream, when opened with [`CudaBackend::on_stream`].
    pub fn engine_stream(&self) -> Option<&Arc<CudaStream>> {
        self.device.engine_stream()
    }

    /// The raw `CUstream` on which kernels are queued (the engine's, with
    /// [`CudaBackend::on_stream`]).
    pub fn compute_stream(&self) -> cudarc::driver::sys::CUstream {
        self.device.compute_stream()
    }

    fn from_device(
        device: ffi::Device,
        ordinal: usize,
        kernel_dir: Option<PathBuf>,
    ) -> Result<Self, GpuError> {
        let no_device = |reason: String| no_device(ordinal, reason);
        let facts = device.facts().map_err(|e| no_device(e.message))?;
        let capability = (
            u32::try_from(facts.major).unwrap_or(0),
            u32::try_from(facts.minor).unwrap_or(0),
        );
        let info = DeviceInfo {
            kind: DeviceKind::Cuda,
            ordinal,
            name: facts.name,
            arch: format!("sm_{}{}", facts.major, facts.minor),
            total_memory: facts.total_memory,
            warp_size: facts.warp_size,
            multiprocessors: facts.multiprocessors,
        };
        Ok(CudaBackend {
            device,
            info,
            kernel_dir,
            prebuilt: None,
            capability,
            modules: ModuleCache::new(),
            staging: Mutex::new(None),
            modules_built: AtomicUsize::new(0),
        })
    }

    /// How many kernel modules this backend has compiled or loaded so far (one per format used).
    pub fn modules_built(&self) -> usize {
        self.modules_built.load(Ordering::SeqCst)
    }

    /// Path of a format's cubin for this device under `dir`: `<dir>/<format>/<sm_XX>.cubin`.
    pub fn cubin_path(dir: &Path, format: &str, arch: &str) -> PathBuf {
        dir.join(format).join(format!("{arch}.cubin"))
    }

    /// NVRTC options used for every kernel: the device's real architecture (so that NVRTC emits
    /// a cubin), no contraction into FMA, IEEE division and square root, no flush to zero.
    pub fn nvrtc_options(arch: &str) -> Vec<String> {
        let mut o = vec![format!("--gpu-architecture={arch}")];
        o.extend(quant_core::NVIDIA_EXACT_FLAGS.iter().map(|f| f.to_string()));
        o.push("--std=c++17".into());
        o
    }

    /// Compiles `spec`'s source with NVRTC for this device and returns the cubin (what
    /// [`KERNEL_DIR_ENV`] expects to find ahead of time).
    pub fn compile_cubin(&self, spec: &KernelSpec) -> Result<Vec<u8>, GpuError> {
        ffi::nvrtc_compile(
            spec.source,
            spec.file_name,
            quant_core::PORTABILITY_HEADER,
            quant_core::PORTABILITY_HEADER_NAME,
            &Self::nvrtc_options(&self.info.arch),
        )
        .map_err(|log| GpuError::Compile {
            file: spec.file_name,
            arch: self.info.arch.clone(),
            log,
        })
    }

    /// NVRTC's version, `(major, minor)`, if the library is installed.
    pub fn nvrtc_version() -> Option<(i32, i32)> {
        ffi::nvrtc_version().ok()
    }

    /// Checks that `image` is a complete little-endian ELF64 file for NVIDIA GPUs: every
    /// header, section and segment it declares lies inside it ([`Elf64::parse`]). The driver
    /// trusts these offsets, so a truncated or damaged file must be refused before it is handed
    /// over. Returns the SM version it was built for.
    pub fn check_cubin(image: &[u8]) -> Result<u32, String> {
        let elf = Elf64::parse(image).map_err(|e| e.to_string())?;
        match elf.cuda_sm() {
            Some(sm) => Ok(sm),
            None => Err(format!(
                "ELF machine {}, not NVIDIA CUDA ({EM_CUDA})",
                elf.machine()
            )),
        }
    }

    /// Uses the cubins under `dir` (`<dir>/<format>/sm_XX.cubin`, as `cargo xtask
    /// build-kernels` writes them; the Python wheel ships them) where one runs on this device:
    /// per format the newest `sm_XX` of the device's major version not above its minor version
    /// ([`best_prebuilt_cubin`]: an sm_80 cubin serves sm_86 and sm_89 devices); formats with
    /// none, and devices of another generation, are compiled with NVRTC as without this. A set
    /// [`KERNEL_DIR_ENV`] (or [`CudaBackend::with_kernel_dir`]) takes precedence.
    pub fn with_prebuilt_cubins(mut self, dir: PathBuf) -> Self {
        self.prebuilt = Some(dir);
        self
    }

    fn build_module(&self, spec: &'static KernelSpec) -> Result<KernelModule, GpuError> {
        let read = |path: PathBuf| match std::fs::read(&path) {
            Ok(image) => Ok((image, Some(path))),
            Err(e) => Err(GpuError::CodeObject {
                path,
                reason: format!("cannot read it: {e}"),
            }),
        };
        let prebuilt = match (&self.kernel_dir, &self.prebuilt) {
            (None, Some(dir)) => best_prebuilt_cubin(&dir.join(spec.format), self.capability),
            _ => None,
        };
        let (image, origin) = match (&self.kernel_dir, prebuilt) {
            (Some(dir), _) => read(Self::cubin_path(dir, spec.format, &self.info.arch))?,
            (None, Some(path)) => read(path)?,
            (None, None) => (self.compile_cubin(spec)?, None),
        };
        let bad = |reason: String| match &origin {
            Some(path) => GpuError::CodeObject {
                path: path.clone(),
                reason,
            },
            None => GpuError::NoKernel {
                format: spec.format.to_string(),
                reason,
            },
        };
        let sm = Self::check_cubin(&image).map_err(&bad)?;
        if origin.is_some() {
            check_cubin_arch(sm, self.capability).map_err(&bad)?;
        }
        let module = self
            .device
            .load_module(&image)
            .map_err(|e| bad(format!("the driver cannot load it: {}", e.message)))?;
        let entry = |name: &str| {
            module
                .function(name)
                .map_err(|e| bad(format!("entry point {name}: {}", e.message)))
        };
        let built = KernelModule {
            f32: entry(spec.entry_f32)?,
            f16: entry(spec.entry_f16)?,
            bf16: entry(spec.entry_bf16)?,
        };
        self.modules_built.fetch_add(1, Ordering::SeqCst);
        Ok(built)
    }

    /// The module of `spec`, built or loaded on first use.
    fn module(&self, spec: &'static KernelSpec) -> Result<Arc<KernelModule>, GpuError> {
        self.modules
            .get_or_try_init(spec.format, || self.build_module(spec))
    }

    /// Builds (or loads) `spec`'s module now rather than on first launch.
    pub fn prepare(&self, spec: &'static KernelSpec) -> Result<(), GpuError> {
        self.module(spec).map(|_| ())
    }

    fn raw<'a>(&self, buf: &'a Buffer, op: &'static str) -> Result<&'a CudaBuffer, GpuError> {
        if buf.device() != (DeviceKind::Cuda, self.info.ordinal) {
            return Err(GpuError::ForeignBuffer { op });
        }
        buf.raw()
            .as_any()
            .downcast_ref::<CudaBuffer>()
            .ok_or(GpuError::ForeignBuffer { op })
    }

    fn raw_mut<'a>(
        &self,
        buf: &'a mut Buffer,
        op: &'static str,
    ) -> Result<&'a mut CudaBuffer, GpuError> {
        if buf.device() != (DeviceKind::Cuda, self.info.ordinal) {
            return Err(GpuError::ForeignBuffer { op });
        }
        buf.raw_mut()
            .as_any_mut()
            .downcast_mut::<CudaBuffer>()
            .ok_or(GpuError::ForeignBuffer { op })
    }

    /// [`Backend::dequantize`] with at most `max_groups` groups launched (the kernels stride
    /// over the rest). `None` launches one group per `blocks_per_group` blocks.
    #[allow(clippy::too_many_arguments)]
    pub fn dequantize_with_grid(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        max_groups: Option<u32>,
    ) -> Result<(), GpuError> {
        self.launch_range(kernel, (src, 0), n_blocks, (dst, 0), dtype, max_groups)
    }

    /// The one launch path: `n_blocks` blocks at `src.0[src.1..]` into `dst.0[dst.1..]`.
    #[allow(clippy::too_many_arguments)]
    fn launch_range(
        &self,
        kernel: &'static KernelSpec,
        (src, src_offset): (&Buffer, usize),
        n_blocks: u64,
        (dst, dst_offset): (&mut Buffer, usize),
        dtype: OutputDType,
        max_groups: Option<u32>,
    ) -> Result<(), GpuError> {
        let src_raw = self.raw(src, "dequantize")?;
        let plan = plan_launch(
            kernel,
            n_blocks,
            BufferRegion::new(src_raw.len(), src_offset),
            BufferRegion::new(dst.len(), dst_offset),
            dtype,
            DeviceLimits::default(),
        )?;
        if plan.is_empty() {
            return Ok(());
        }
        let plan = match max_groups {
            Some(cap) => plan.with_max_groups(cap),
            None => plan,
        };
        let module = self.module(kernel)?;
        let entry = kernel.entry(dtype);
        let dst_raw = self.raw_mut(dst, "dequantize")?;
        self.device
            .launch(module.entry(dtype), &plan, &src_raw.mem, &mut dst_raw.mem)
            .map_err(|e| GpuError::Launch {
                entry,
                file: kernel.file_name,
                reason: e.message,
            })
    }

    fn with_staging<T>(
        &self,
        f: impl FnOnce(&ffi::Device, &mut ffi::Staging) -> Result<T, ffi::FfiError>,
        op: &'static str,
    ) -> Result<T, GpuError> {
        let mut guard = self.staging.lock();
        if guard.is_none() {
            *guard = Some(
                self.device
                    .staging(STAGING_CHUNK)
                    .map_err(driver_err("allocating pinned staging memory"))?,
            );
        }
        let staging = guard.as_mut().expect("just filled");
        f(&self.device, staging).map_err(driver_err(op))
    }
}

impl Backend for CudaBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn mem_info(&self) -> Result<MemInfo, GpuError> {
        let (free, total) = self.device.mem_info().map_err(driver_err("cuMemGetInfo"))?;
        Ok(MemInfo { free, total })
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        match self.device.alloc(bytes) {
            Ok(mem) => Ok(Buffer::new(
                Box::new(CudaBuffer { mem }),
                DeviceKind::Cuda,
                self.info.ordinal,
            )),
            Err(e) if e.out_of_memory => {
                let (free, total) = self
                    .device
                    .mem_info()
                    .unwrap_or((0, self.info.total_memory));
                Err(GpuError::OutOfMemory {
                    device: format!("cuda:{} ({})", self.info.ordinal, self.info.name),
                    wanted: bytes as u64,
                    free,
                    total,
                })
            }
            Err(e) => Err(driver_err(format!("allocating {bytes} bytes"))(e)),
        }
    }

    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.upload_at(src, dst, 0)
    }

    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError> {
        if src.len() < dst.len() {
            return Err(GpuError::BufferSize {
                op: "download",
                have: src.len(),
                need: dst.len(),
            });
        }
        let raw = self.raw(src, "download")?;
        if dst.len() <= DIRECT_LIMIT {
            return self
                .device
                .download_direct(&raw.mem, 0, dst)
                .map_err(driver_err("download"));
        }
        self.with_staging(
            |dev, st| dev.download_staged(st, &raw.mem, 0, dst),
            "download",
        )
    }

    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError> {
        let raw = self.raw_mut(buf, "fill")?;
        self.device
            .memset(&mut raw.mem, value)
            .map_err(driver_err("cuMemsetD8Async"))
    }

    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        if src.len() != dst.len() {
            return Err(GpuError::BufferSize {
                op: "copy",
                have: dst.len(),
                need: src.len(),
            });
        }
        let s = self.raw(src, "copy")?;
        let d = self.raw_mut(dst, "copy")?;
        self.device
            .copy_d2d(&s.mem, &mut d.mem, s.len())
            .map_err(driver_err("cuMemcpyDtoDAsync"))
    }

    fn dequantize(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        self.dequantize_with_grid(kernel, src, n_blocks, dst, dtype, None)
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        self.device
            .synchronize()
            .map_err(driver_err("cuStreamSynchronize"))
    }

    #[allow(unsafe_code)] // the trait's contract; the driver calls are in `ffi`
    unsafe fn wrap_device_memory(&self, ptr: u64, len: usize) -> Result<Buffer, GpuError> {
        quant_gpu::check_foreign_memory(ptr, len)?;
        // SAFETY: the caller keeps the memory alive (this method's contract).
        let mem = unsafe { self.device.wrap(ptr, len) }.map_err(|e| GpuError::ForeignMemory {
            ptr,
            len,
            reason: e.message,
        })?;
        Ok(Buffer::new(
            Box::new(CudaBuffer { mem }),
            DeviceKind::Cuda,
            self.info.ordinal,
        ))
    }

    #[allow(unsafe_code)] // the trait's contract; the driver calls are in `ffi`
    unsafe fn make_stream_wait(&self, stream: usize) -> Result<(), GpuError> {
        // SAFETY: the caller vouches for the stream (this method's contract).
        unsafe { self.device.make_stream_wait(stream) }.map_err(driver_err("cuStreamWaitEvent"))
    }

    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError> {
        let ev = |_| {
            self.device
                .timing_event()
                .map_err(driver_err("cuEventCreate"))
        };
        let mut pairs = Vec::with_capacity(iters);
        for i in 0..iters {
            let (start, end) = (ev(i)?, ev(i)?);
            self.device
                .record(&start)
                .map_err(driver_err("cuEventRecord"))?;
            op()?;
            self.device
                .record(&end)
                .map_err(driver_err("cuEventRecord"))?;
            pairs.push((start, end));
        }
        pairs
            .iter()
            .map(|(s, e)| s.elapsed_ms(e).map_err(driver_err("cuEventElapsedTime")))
            .collect()
    }

    fn async_primitives(&self) -> bool {
        true
    }

    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        let p = self
            .device
            .pinned(bytes)
            .map_err(driver_err(format!("cuMemHostAlloc of {bytes} bytes")))?;
        Ok(HostBuffer::new(Box::new(p)))
    }

    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: std::ops::Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        check_upload(&range, src.len(), dst_offset, dst.len())?;
        if !src.is_pinned() {
            return self.upload_at(&src.as_slice()[range], dst, dst_offset);
        }
        let raw = self.raw_mut(dst, "upload_async")?;
        self.device
            .upload_async(queue, src, range, &mut raw.mem, dst_offset)
            .map_err(driver_err("cuMemcpyHtoDAsync (pinned)"))
    }

    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        check_region("upload_at", dst_offset, src.len(), dst.len())?;
        let raw = self.raw_mut(dst, "upload_at")?;
        if src.len() <= DIRECT_LIMIT {
            return self
                .device
                .upload_direct(src, &mut raw.mem, dst_offset)
                .map_err(driver_err("upload"));
        }
        self.with_staging(
            |dev, st| dev.upload_staged(st, src, &mut raw.mem, dst_offset),
            "upload",
        )
    }

    fn upload_pageable(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        if dst.len() < src.len() {
            return Err(GpuError::BufferSize {
                op: "upload_pageable",
                have: dst.len(),
                need: src.len(),
            });
        }
        let raw = self.raw_mut(dst, "upload_pageable")?;
        self.device
            .upload_direct(src, &mut raw.mem, 0)
            .map_err(driver_err("cuMemcpyHtoD (pageable)"))
    }

    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        let e = self
            .device
            .record_on(queue)
            .map_err(driver_err("cuEventRecord"))?;
        Ok(Fence::new(queue, Box::new(e)))
    }

    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        let Some(raw) = fence.raw() else {
            return Ok(());
        };
        match raw.as_any().downcast_ref::<ffi::Event>() {
            Some(e) => self
                .device
                .wait_on(queue, e)
                .map_err(driver_err("cuStreamWaitEvent")),
            // A fence of another backend: wait on the host, which is always correct.
            None => fence.wait(),
        }
    }

    fn dequantize_at(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        src_offset: usize,
        n_blocks: u64,
        dst: &mut Buffer,
        dst_offset: usize,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        self.launch_range(
            kernel,
            (src, src_offset),
            n_blocks,
            (dst, dst_offset),
            dtype,
            None,
        )
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
