//! [`CudaDriver`]: the CUDA side of [`quant_gpu::driver::Driver`], over [`crate::ffi`]. What it
//! adds to the FFI is where kernels come from (NVRTC, a folder of cubins, shipped cubins) and
//! the names of the driver calls in errors; everything a backend checks is in quant-gpu.

use std::ops::Range;
use std::path::PathBuf;

use parking_lot::Mutex;
use quant_gpu::driver::{Driver, DriverError, DriverResult, Entries};
use quant_gpu::{
    ContextModules, DeviceInfo, DeviceKind, DeviceLimits, GpuError, HostBuffer, KernelSpec,
    LaunchPlan, MemInfo, OutputDType, Queue, RawBuffer,
};

use crate::cubin::{self, best_prebuilt_cubin, check_cubin_arch};
use crate::ffi;

/// Bytes of each of the two pinned staging buffers.
const STAGING_CHUNK: usize = 16 << 20;

/// Transfers up to this size skip the staging buffers.
const DIRECT_LIMIT: usize = 1 << 20;

/// Where a backend's kernels come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KernelSource {
    /// Compiled with NVRTC for the device.
    Nvrtc,
    /// `<dir>/<format>/<sm_XX>.cubin`, nothing else ([`crate::KERNEL_DIR_ENV`]).
    Dir(PathBuf),
    /// The best cubin of `<dir>/<format>/` for the device, else NVRTC
    /// ([`CudaBackend::with_prebuilt_cubins`](crate::CudaBackend::with_prebuilt_cubins)).
    Prebuilt(PathBuf),
}

/// Modules are shared by the backends of one context (its `CUcontext`) that take kernels from
/// the same place.
type Scope = (usize, KernelSource);

static MODULES: ContextModules<Scope, Entries<ffi::Function>> = ContextModules::new();

/// One CUDA device: its context and streams ([`ffi::Device`]), what it is, and where its
/// kernels come from.
pub(crate) struct CudaDriver {
    pub(crate) device: ffi::Device,
    info: DeviceInfo,
    limits: DeviceLimits,
    /// Compute capability `(major, minor)`.
    capability: (u32, u32),
    pub(crate) source: KernelSource,
    staging: Mutex<Option<ffi::Staging>>,
}

/// A driver error of the call `op`, keeping whether memory ran out.
fn op(op: impl Into<String>) -> impl FnOnce(ffi::FfiError) -> DriverError {
    let op = op.into();
    move |e| DriverError {
        op,
        reason: e.message,
        out_of_memory: e.out_of_memory,
    }
}

impl CudaDriver {
    /// The driver of an opened device, asking it what it is and what it allows.
    pub(crate) fn new(
        device: ffi::Device,
        ordinal: usize,
        source: KernelSource,
    ) -> Result<Self, String> {
        let facts = device.facts().map_err(|e| e.message)?;
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
        let limits = DeviceLimits {
            max_threads_per_group: facts.max_threads_per_block,
            max_groups: facts.max_grid_x.max(1),
        };
        Ok(CudaDriver {
            device,
            info,
            limits,
            capability,
            source,
            staging: Mutex::new(None),
        })
    }

    /// Compiles `spec`'s source with NVRTC for this device and returns the cubin.
    pub(crate) fn compile_cubin(&self, spec: &KernelSpec) -> Result<Vec<u8>, GpuError> {
        ffi::nvrtc_compile(
            spec.source,
            spec.file_name,
            quant_core::PORTABILITY_HEADER,
            quant_core::PORTABILITY_HEADER_NAME,
            &cubin::nvrtc_options(&self.info.arch),
        )
        .map_err(|log| GpuError::Compile {
            file: spec.file_name,
            arch: self.info.arch.clone(),
            log,
        })
    }

    /// `spec`'s cubin and the file it came from (`None`: compiled with NVRTC).
    fn cubin(&self, spec: &KernelSpec) -> Result<(Vec<u8>, Option<PathBuf>), GpuError> {
        let read = |path: PathBuf| match std::fs::read(&path) {
            Ok(image) => Ok((image, Some(path))),
            Err(e) => Err(GpuError::CodeObject {
                path,
                reason: format!("cannot read it: {e}"),
            }),
        };
        match &self.source {
            KernelSource::Dir(dir) => read(cubin::path(dir, spec.format, &self.info.arch)),
            KernelSource::Prebuilt(dir) => {
                match best_prebuilt_cubin(&dir.join(spec.format), self.capability) {
                    Some(path) => read(path),
                    None => Ok((self.compile_cubin(spec)?, None)),
                }
            }
            KernelSource::Nvrtc => Ok((self.compile_cubin(spec)?, None)),
        }
    }

    fn with_staging<T>(
        &self,
        f: impl FnOnce(&ffi::Device, &mut ffi::Staging) -> Result<T, ffi::FfiError>,
        name: &'static str,
    ) -> DriverResult<T> {
        let mut guard = self.staging.lock();
        if guard.is_none() {
            *guard = Some(
                self.device
                    .staging(STAGING_CHUNK)
                    .map_err(op("cuMemHostAlloc (staging)"))?,
            );
        }
        let staging = guard.as_mut().expect("just filled");
        f(&self.device, staging).map_err(op(name))
    }
}

impl RawBuffer for ffi::DevMem {
    fn len(&self) -> usize {
        ffi::DevMem::len(self)
    }
    fn device_ptr(&self) -> u64 {
        self.addr()
    }
    fn owns_memory(&self) -> bool {
        self.owned()
    }
    fn release(&mut self) {
        ffi::DevMem::release(self);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Driver for CudaDriver {
    type Mem = ffi::DevMem;
    type Module = Entries<ffi::Function>;
    type Event = ffi::Event;
    type TimingEvent = ffi::Event;
    type Scope = Scope;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn limits(&self) -> DeviceLimits {
        self.limits
    }

    fn mem_info(&self) -> DriverResult<MemInfo> {
        let (free, total) = self.device.mem_info().map_err(op("cuMemGetInfo"))?;
        Ok(MemInfo { free, total })
    }

    fn alloc(&self, bytes: usize) -> DriverResult<ffi::DevMem> {
        self.device
            .alloc(bytes)
            .map_err(op(format!("cuMemAlloc({bytes} bytes)")))
    }

    #[allow(unsafe_code)] // the trait's contract; the driver calls are in `ffi`
    unsafe fn wrap(&self, ptr: u64, len: usize) -> Result<ffi::DevMem, String> {
        // SAFETY: the caller keeps the memory alive (this method's contract).
        unsafe { self.device.wrap(ptr, len) }.map_err(|e| e.message)
    }

    fn alloc_host(&self, bytes: usize) -> DriverResult<HostBuffer> {
        let pinned = self
            .device
            .pinned(bytes)
            .map_err(op(format!("cuMemHostAlloc({bytes} bytes)")))?;
        Ok(HostBuffer::new(Box::new(pinned)))
    }

    fn owns_host(&self, host: &HostBuffer) -> bool {
        self.device.owns_pinned(host)
    }

    fn upload(&self, src: &[u8], dst: &mut ffi::DevMem, offset: usize) -> DriverResult<()> {
        if src.len() <= DIRECT_LIMIT {
            return self
                .device
                .upload_direct(src, dst, offset)
                .map_err(op("cuMemcpyHtoDAsync"));
        }
        self.with_staging(
            |dev, st| dev.upload_staged(st, src, dst, offset),
            "cuMemcpyHtoDAsync (staged)",
        )
    }

    fn upload_pageable(&self, src: &[u8], dst: &mut ffi::DevMem) -> DriverResult<()> {
        self.device
            .upload_direct(src, dst, 0)
            .map_err(op("cuMemcpyHtoDAsync (pageable)"))
    }

    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut ffi::DevMem,
        offset: usize,
    ) -> DriverResult<()> {
        self.device
            .upload_async(queue, src, range, dst, offset)
            .map_err(op("cuMemcpyHtoDAsync (pinned)"))
    }

    fn download(&self, src: &ffi::DevMem, dst: &mut [u8]) -> DriverResult<()> {
        if dst.len() <= DIRECT_LIMIT {
            return self
                .device
                .download_direct(src, 0, dst)
                .map_err(op("cuMemcpyDtoHAsync"));
        }
        self.with_staging(
            |dev, st| dev.download_staged(st, src, 0, dst),
            "cuMemcpyDtoHAsync (staged)",
        )
    }

    fn memset(&self, dst: &mut ffi::DevMem, value: u8) -> DriverResult<()> {
        self.device
            .memset(dst, value)
            .map_err(op("cuMemsetD8Async"))
    }

    fn copy(
        &self,
        queue: Queue,
        src: &ffi::DevMem,
        dst: &mut ffi::DevMem,
        bytes: usize,
    ) -> DriverResult<()> {
        self.device
            .copy_d2d(queue, src, dst, bytes)
            .map_err(op("cuMemcpyDtoDAsync"))
    }

    fn synchronize(&self) -> DriverResult<()> {
        self.device.synchronize().map_err(op("cuStreamSynchronize"))
    }

    fn record(&self, queue: Queue) -> DriverResult<ffi::Event> {
        self.device.record_on(queue).map_err(op("cuEventRecord"))
    }

    fn wait_event(&self, queue: Queue, event: &ffi::Event) -> DriverResult<()> {
        self.device
            .wait_on(queue, event)
            .map_err(op("cuStreamWaitEvent"))
    }

    #[allow(unsafe_code)] // the trait's contract; the driver calls are in `ffi`
    unsafe fn make_stream_wait(&self, stream: usize) -> DriverResult<()> {
        // SAFETY: the caller vouches for the stream (this method's contract).
        unsafe { self.device.make_stream_wait(stream) }.map_err(op("cuStreamWaitEvent"))
    }

    fn timing_event(&self) -> DriverResult<ffi::Event> {
        self.device.timing_event().map_err(op("cuEventCreate"))
    }

    fn record_timing(&self, event: &ffi::Event) -> DriverResult<()> {
        self.device.record(event).map_err(op("cuEventRecord"))
    }

    fn elapsed_ms(&self, start: &ffi::Event, end: &ffi::Event) -> DriverResult<f32> {
        start.elapsed_ms(end).map_err(op("cuEventElapsedTime"))
    }

    fn module_scope(&self) -> Scope {
        (self.device.context().cu_ctx() as usize, self.source.clone())
    }

    fn module_registry() -> &'static ContextModules<Scope, Entries<ffi::Function>> {
        &MODULES
    }

    /// The cubin from where [`KernelSource`] says, its ELF checked and, for a file, its `sm_XX`
    /// against the device before the driver sees it; then its three entry points.
    fn load_module(&self, spec: &'static KernelSpec) -> Result<Entries<ffi::Function>, GpuError> {
        let (image, origin) = self.cubin(spec)?;
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
        let sm = cubin::check(&image).map_err(&bad)?;
        if origin.is_some() {
            check_cubin_arch(sm, self.capability).map_err(&bad)?;
        }
        let module = self
            .device
            .load_module(&image)
            .map_err(|e| bad(format!("the driver cannot load it: {}", e.message)))?;
        Entries::load(spec, |name| {
            module
                .function(name)
                .map_err(|e| bad(format!("entry point {name}: {}", e.message)))
        })
    }

    fn groups_per_multiprocessor(
        &self,
        module: &Entries<ffi::Function>,
        dtype: OutputDType,
        threads: u32,
    ) -> DriverResult<u32> {
        let what = format!("cuOccupancyMaxActiveBlocksPerMultiprocessor({threads} threads)");
        module
            .get(dtype)
            .groups_per_multiprocessor(threads)
            .map_err(op(what))
    }

    fn launch(
        &self,
        queue: Queue,
        module: &Entries<ffi::Function>,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &ffi::DevMem,
        dst: &mut ffi::DevMem,
    ) -> DriverResult<()> {
        self.device
            .launch(queue, module.get(dtype), plan, src, dst)
            .map_err(op(launch_op(plan)))
    }

    #[allow(unsafe_code)] // the trait's contract; the driver calls are in `ffi`
    unsafe fn launch_on_stream(
        &self,
        module: &Entries<ffi::Function>,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &ffi::DevMem,
        dst: &mut ffi::DevMem,
        stream: usize,
    ) -> DriverResult<()> {
        let stream = stream as cudarc::driver::sys::CUstream;
        // SAFETY: the caller vouches for the stream and the buffers (this method's contract).
        unsafe {
            self.device
                .launch_on(module.get(dtype), plan, src, dst, stream)
        }
        .map_err(op(launch_op(plan)))
    }
}

fn launch_op(plan: &LaunchPlan) -> String {
    format!(
        "cuLaunchKernel({} x {})",
        plan.groups(),
        plan.threads_per_group()
    )
}
