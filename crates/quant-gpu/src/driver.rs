//! [`GpuBackend`]: the [`Backend`] written once for every GPU vendor, over the vendor's
//! [`Driver`].
//!
//! CUDA and HIP differ in their FFI, not in what a backend does with it. A vendor crate
//! implements [`Driver`]: the raw operations on one device, with its own memory, module and event
//! types. [`GpuBackend`] implements every [`Backend`] method once over it:
//!
//! * a [`Buffer`] holds the driver's memory ([`Driver::Mem`]); one checked downcast takes it
//!   back, and a buffer of another backend or device is [`GpuError::ForeignBuffer`];
//! * sizes, ranges and offsets are checked here, before the driver sees them;
//! * every kernel launch is checked and sized by [`plan_launch`] with the device's own limits
//!   ([`Driver::limits`]);
//! * a format's module is built once per [`Driver::Scope`] (one device context and one source of
//!   kernels) and shared by every backend of that scope while one of them lives
//!   ([`ContextModules`]);
//! * driver errors become [`GpuError`]s of one shape: [`GpuError::Driver`] naming the call,
//!   [`GpuError::OutOfMemory`] with the device's label and memory figures, [`GpuError::Launch`]
//!   naming the entry point;
//! * [`Backend::time_events`] records a pair of timing events around each run and reads them
//!   after the last run, so that no run waits for the one before.
//!
//! A vendor's public backend type wraps a `GpuBackend`, adds its own constructors, and is a
//! [`Backend`] through [`DelegateBackend`].

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use quant_core::{KernelSpec, OutputDType};

use crate::{
    check_foreign_memory, check_region, check_upload, plan_launch, Backend, Buffer, BufferRegion,
    ContextModules, DeviceInfo, DeviceLimits, Fence, GpuError, HostBuffer, LaunchPlan, MemInfo,
    ModuleCache, Queue, RawBuffer, RawFence,
};

/// A failed driver call, as a vendor's FFI layer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverError {
    /// The call, and what it was asked to do (`"hipMalloc(4096 bytes on device 0)"`).
    pub op: String,
    /// The driver's message.
    pub reason: String,
    /// Whether the driver said that device memory ran out.
    pub out_of_memory: bool,
}

impl DriverError {
    /// A failure of the call `op`, for `reason`.
    pub fn new(op: impl Into<String>, reason: impl Into<String>) -> Self {
        DriverError {
            op: op.into(),
            reason: reason.into(),
            out_of_memory: false,
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.reason)
    }
}

impl From<DriverError> for GpuError {
    fn from(e: DriverError) -> Self {
        GpuError::Driver {
            op: e.op,
            reason: e.reason,
        }
    }
}

/// What a [`Driver`] call returns.
pub type DriverResult<T> = Result<T, DriverError>;

/// The error of a failed launch of `kernel`'s entry point for `dtype`.
fn launch_error(kernel: &KernelSpec, dtype: OutputDType) -> impl FnOnce(DriverError) -> GpuError {
    let (entry, file) = (kernel.entry(dtype), kernel.file_name);
    move |e| GpuError::Launch {
        entry,
        file,
        reason: e.to_string(),
    }
}

/// The raw operations of one GPU through one vendor API: what differs between CUDA and HIP.
///
/// [`GpuBackend`] calls these after its own checks: buffers are this driver's, ranges lie inside
/// them, offsets and launches are planned. Implementations still check what their FFI relies on
/// before handing pointers to the driver, and return the driver's errors as [`DriverError`]s.
/// Work goes on the device's compute queue ([`Queue::Compute`]) unless a method takes a queue.
pub trait Driver: Send + Sync + Sized + 'static {
    /// Device memory: an allocation of this device, or the caller's memory wrapped without
    /// ownership. It is what a [`Buffer`] made by this backend holds.
    type Mem: RawBuffer + 'static;
    /// One format's loaded module (its three entry points; see [`Entries`]).
    type Module: Send + Sync + 'static;
    /// A synchronisation event, what a [`Fence`] of this backend holds.
    type Event: RawFence + 'static;
    /// An event that records when the device reached it.
    type TimingEvent: Send;
    /// What loaded modules are shared under: backends whose drivers have equal scopes share
    /// them. It names the device context (modules belong to one) and where the kernels come
    /// from (backends reading code objects from different places must not share).
    type Scope: PartialEq + Clone + Send + Sync + fmt::Debug + 'static;

    /// The device.
    fn info(&self) -> &DeviceInfo;
    /// The device's own launch limits, as the driver reports them.
    fn limits(&self) -> DeviceLimits;
    /// Free and total device memory now.
    fn mem_info(&self) -> DriverResult<MemInfo>;

    /// Allocates `bytes` bytes of device memory (at least one byte is reserved, so that every
    /// allocation has a valid address). Running out is an error with `out_of_memory` set.
    fn alloc(&self, bytes: usize) -> DriverResult<Self::Mem>;
    /// The caller's `len` bytes at `ptr`, after asking the driver that they lie inside one
    /// allocation of this device; wrapped without ownership. The error is the reason for the
    /// refusal. [`GpuBackend`] has refused null, misaligned and wrapping ranges already.
    ///
    /// # Safety
    /// The memory must stay allocated while the returned value and the work queued on it live.
    #[allow(unsafe_code)] // a contract on the caller
    unsafe fn wrap(&self, ptr: u64, len: usize) -> Result<Self::Mem, String>;
    /// `bytes` zeroed bytes of page-locked host memory.
    fn alloc_host(&self, bytes: usize) -> DriverResult<HostBuffer>;
    /// Whether `host` is page-locked memory that this driver can copy from asynchronously
    /// (its own, of this device and context).
    fn owns_host(&self, host: &HostBuffer) -> bool;

    /// Copies `src` to `dst[offset..]` and returns once it has landed.
    fn upload(&self, src: &[u8], dst: &mut Self::Mem, offset: usize) -> DriverResult<()>;
    /// Copies `src` to the start of `dst` straight from pageable memory, without staging, and
    /// returns once it has landed. Default: [`Driver::upload`].
    fn upload_pageable(&self, src: &[u8], dst: &mut Self::Mem) -> DriverResult<()> {
        self.upload(src, dst, 0)
    }
    /// Queues a copy of `src[range]` (memory this driver owns: [`Driver::owns_host`]) to
    /// `dst[offset..]` on `queue`, and sets `src`'s pending fence to an event after it.
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Self::Mem,
        offset: usize,
    ) -> DriverResult<()>;
    /// Copies the first `dst.len()` bytes of `src` to `dst`, after the work queued so far, and
    /// returns once they are there.
    fn download(&self, src: &Self::Mem, dst: &mut [u8]) -> DriverResult<()>;
    /// Queues setting every byte of `dst` to `value`.
    fn memset(&self, dst: &mut Self::Mem, value: u8) -> DriverResult<()>;
    /// Queues a copy of the first `bytes` bytes of `src` to `dst` on `queue`.
    fn copy(
        &self,
        queue: Queue,
        src: &Self::Mem,
        dst: &mut Self::Mem,
        bytes: usize,
    ) -> DriverResult<()>;
    /// Waits for all queued work, on every queue.
    fn synchronize(&self) -> DriverResult<()>;

    /// An event after the work queued on `queue` so far.
    fn record(&self, queue: Queue) -> DriverResult<Self::Event>;
    /// Makes work queued on `queue` after this call wait for `event`, without blocking the host.
    fn wait_event(&self, queue: Queue, event: &Self::Event) -> DriverResult<()>;
    /// Makes later work on the caller's `stream` wait for everything queued on this device's
    /// queues so far ([`Backend::make_stream_wait`], whose handle rules apply).
    ///
    /// # Safety
    /// `stream` must be a live stream of this device and context, or a sentinel the vendor
    /// allows.
    #[allow(unsafe_code)] // a contract on the caller
    unsafe fn make_stream_wait(&self, stream: usize) -> DriverResult<()>;

    /// A new event that records time.
    fn timing_event(&self) -> DriverResult<Self::TimingEvent>;
    /// Records `event` on the compute queue.
    fn record_timing(&self, event: &Self::TimingEvent) -> DriverResult<()>;
    /// Milliseconds between two recorded events, waiting for `end` first.
    fn elapsed_ms(&self, start: &Self::TimingEvent, end: &Self::TimingEvent) -> DriverResult<f32>;

    /// The scope this driver's modules are shared under.
    fn module_scope(&self) -> Self::Scope;
    /// This vendor's module caches, one per scope (a `static`).
    fn module_registry() -> &'static ContextModules<Self::Scope, Self::Module>;
    /// Builds or loads `spec`'s module for this device. Errors say which code object or source
    /// failed and why ([`GpuError::CodeObject`], [`GpuError::Compile`], [`GpuError::NoKernel`]).
    fn load_module(&self, spec: &'static KernelSpec) -> Result<Self::Module, GpuError>;
    /// Groups of `threads` threads of `module`'s entry point for `dtype` that one multiprocessor
    /// runs at once: the kernel's occupancy, given its registers and shared memory.
    fn groups_per_multiprocessor(
        &self,
        module: &Self::Module,
        dtype: OutputDType,
        threads: u32,
    ) -> DriverResult<u32>;
    /// Queues one launch of `module`'s entry point for `dtype` on `queue` as `plan` says,
    /// reading `src[plan.src_range()]` and writing `dst[plan.dst_range()]`. The plan is not
    /// empty.
    fn launch(
        &self,
        queue: Queue,
        module: &Self::Module,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &Self::Mem,
        dst: &mut Self::Mem,
    ) -> DriverResult<()>;
    /// [`Driver::launch`] queued on the caller's `stream` (a raw stream handle of this device's
    /// context, as an integer; 0 is the default stream) instead of the compute queue, and not
    /// waited for.
    ///
    /// # Safety
    /// `stream` must be a live stream of this device and context, and `src` and `dst` must stay
    /// allocated until the kernel has run.
    #[allow(unsafe_code)] // a contract on the caller
    unsafe fn launch_on_stream(
        &self,
        module: &Self::Module,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &Self::Mem,
        dst: &mut Self::Mem,
        stream: usize,
    ) -> DriverResult<()>;
}

/// The three entry points of one format's module, one per output type.
#[derive(Debug)]
pub struct Entries<F> {
    f32: F,
    f16: F,
    bf16: F,
}

impl<F> Entries<F> {
    /// Looks `spec`'s three entry points up with `get`.
    pub fn load<E>(
        spec: &KernelSpec,
        mut get: impl FnMut(&'static str) -> Result<F, E>,
    ) -> Result<Self, E> {
        Ok(Entries {
            f32: get(spec.entry_f32)?,
            f16: get(spec.entry_f16)?,
            bf16: get(spec.entry_bf16)?,
        })
    }

    /// The entry point producing `dtype`.
    pub fn get(&self, dtype: OutputDType) -> &F {
        match dtype {
            OutputDType::F32 => &self.f32,
            OutputDType::F16 => &self.f16,
            OutputDType::Bf16 => &self.bf16,
        }
    }
}

/// A checked launch and the module it runs; `None` when there is nothing to launch.
type Prepared<M> = Option<(LaunchPlan, Arc<M>)>;

/// A [`Backend`] over a vendor's [`Driver`]: every check, downcast, launch plan, module cache
/// and error shape written once (see the [module docs](self)).
pub struct GpuBackend<D: Driver> {
    // The driver drops first: it waits for its queues before the modules can be unloaded.
    driver: D,
    modules: Arc<ModuleCache<&'static str, D::Module>>,
    modules_built: AtomicUsize,
}

impl<D: Driver> fmt::Debug for GpuBackend<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuBackend")
            .field("info", self.driver.info())
            .field("scope", &self.driver.module_scope())
            .finish_non_exhaustive()
    }
}

impl<D: Driver> GpuBackend<D> {
    /// The backend over `driver`, sharing modules with every live backend of its scope.
    pub fn new(driver: D) -> Self {
        let modules = D::module_registry().get(&driver.module_scope());
        GpuBackend {
            driver,
            modules,
            modules_built: AtomicUsize::new(0),
        }
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// Changes the driver (where its kernels come from, say) and takes the module cache of its
    /// scope as it is after the change. Queued work is waited for first, since the modules of
    /// the old scope may go with it.
    pub fn with_driver(mut self, change: impl FnOnce(&mut D)) -> Self {
        // A failure means the device is lost, and its modules with it: nothing is left to wait
        // for.
        let _ = self.driver.synchronize();
        change(&mut self.driver);
        self.modules = D::module_registry().get(&self.driver.module_scope());
        self
    }

    /// How many modules this backend has built or loaded (one per format that no backend of its
    /// scope had loaded before).
    pub fn modules_built(&self) -> usize {
        self.modules_built.load(Ordering::SeqCst)
    }

    /// Builds or loads `spec`'s module now rather than on its first launch.
    pub fn prepare(&self, spec: &'static KernelSpec) -> Result<(), GpuError> {
        self.module(spec).map(|_| ())
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
        let grid = (Queue::Compute, max_groups);
        self.launch_range(kernel, (src, 0), n_blocks, (dst, 0), dtype, grid)
    }

    /// The module of `spec`, built on the first use in this backend's scope.
    fn module(&self, spec: &'static KernelSpec) -> Result<Arc<D::Module>, GpuError> {
        self.modules.get_or_try_init(spec.format, || {
            let module = self.driver.load_module(spec)?;
            self.modules_built.fetch_add(1, Ordering::SeqCst);
            Ok(module)
        })
    }

    /// The driver's memory behind `buf`, if this backend made it.
    fn mem<'a>(&self, buf: &'a Buffer, op: &'static str) -> Result<&'a D::Mem, GpuError> {
        self.check_device(buf, op)?;
        buf.raw()
            .as_any()
            .downcast_ref::<D::Mem>()
            .ok_or(GpuError::ForeignBuffer { op })
    }

    /// [`GpuBackend::mem`], mutably.
    fn mem_mut<'a>(
        &self,
        buf: &'a mut Buffer,
        op: &'static str,
    ) -> Result<&'a mut D::Mem, GpuError> {
        self.check_device(buf, op)?;
        buf.raw_mut()
            .as_any_mut()
            .downcast_mut::<D::Mem>()
            .ok_or(GpuError::ForeignBuffer { op })
    }

    fn check_device(&self, buf: &Buffer, op: &'static str) -> Result<(), GpuError> {
        let info = self.driver.info();
        if buf.device() != (info.kind, info.ordinal) {
            return Err(GpuError::ForeignBuffer { op });
        }
        Ok(())
    }

    fn buffer(&self, mem: D::Mem) -> Buffer {
        let info = self.driver.info();
        Buffer::new(Box::new(mem), info.kind, info.ordinal)
    }

    /// A launch on `queue`: `n_blocks` blocks at `src[src_offset..]` into
    /// `dst[dst_offset..]`, at most `max_groups` groups.
    fn launch_range(
        &self,
        kernel: &'static KernelSpec,
        (src, src_offset): (&Buffer, usize),
        n_blocks: u64,
        (dst, dst_offset): (&mut Buffer, usize),
        dtype: OutputDType,
        (queue, max_groups): (Queue, Option<u32>),
    ) -> Result<(), GpuError> {
        let src = self.mem(src, "dequantize")?;
        let dst = self.mem_mut(dst, "dequantize")?;
        let regions = (
            BufferRegion::new(src.len(), src_offset),
            BufferRegion::new(dst.len(), dst_offset),
        );
        let Some((plan, module)) = self.prepare_launch(kernel, n_blocks, regions, dtype)? else {
            return Ok(());
        };
        let plan = match max_groups {
            Some(cap) => plan.with_max_groups(cap),
            None => plan,
        };
        self.driver
            .launch(queue, &module, dtype, &plan, src, dst)
            .map_err(launch_error(kernel, dtype))
    }

    /// The one check of a launch: `n_blocks` blocks of `kernel`'s format in the source region,
    /// their values in the destination region, planned by [`plan_launch`] with the device's
    /// limits, and the module. `None` when there is nothing to launch: zero blocks load no
    /// module.
    fn prepare_launch(
        &self,
        kernel: &'static KernelSpec,
        n_blocks: u64,
        (src, dst): (BufferRegion, BufferRegion),
        dtype: OutputDType,
    ) -> Result<Prepared<D::Module>, GpuError> {
        let plan = plan_launch(kernel, n_blocks, src, dst, dtype, self.driver.limits())?;
        if plan.is_empty() {
            return Ok(None);
        }
        Ok(Some((plan, self.module(kernel)?)))
    }

    /// The error for a failed allocation of `bytes` bytes.
    fn alloc_error(&self, bytes: usize, e: DriverError) -> GpuError {
        if !e.out_of_memory {
            return e.into();
        }
        let info = self.driver.info();
        let mem = self.driver.mem_info().unwrap_or(MemInfo {
            free: 0,
            total: info.total_memory,
        });
        GpuError::OutOfMemory {
            device: info.label(),
            wanted: bytes as u64,
            free: mem.free,
            total: mem.total,
        }
    }
}

impl<D: Driver> Backend for GpuBackend<D> {
    fn info(&self) -> &DeviceInfo {
        self.driver.info()
    }

    fn mem_info(&self) -> Result<MemInfo, GpuError> {
        Ok(self.driver.mem_info()?)
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        match self.driver.alloc(bytes) {
            Ok(mem) => Ok(self.buffer(mem)),
            Err(e) => Err(self.alloc_error(bytes, e)),
        }
    }

    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        if dst.len() < src.len() {
            return Err(GpuError::BufferSize {
                op: "upload",
                have: dst.len(),
                need: src.len(),
            });
        }
        let mem = self.mem_mut(dst, "upload")?;
        Ok(self.driver.upload(src, mem, 0)?)
    }

    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError> {
        if src.len() < dst.len() {
            return Err(GpuError::BufferSize {
                op: "download",
                have: src.len(),
                need: dst.len(),
            });
        }
        let mem = self.mem(src, "download")?;
        Ok(self.driver.download(mem, dst)?)
    }

    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError> {
        let mem = self.mem_mut(buf, "fill")?;
        Ok(self.driver.memset(mem, value)?)
    }

    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        self.copy_on(Queue::Compute, src, dst)
    }

    fn copy_on(&self, queue: Queue, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        if src.len() != dst.len() {
            return Err(GpuError::BufferSize {
                op: "copy",
                have: dst.len(),
                need: src.len(),
            });
        }
        let s = self.mem(src, "copy")?;
        let d = self.mem_mut(dst, "copy")?;
        Ok(self.driver.copy(queue, s, d, s.len())?)
    }

    fn dequantize(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        let grid = (Queue::Compute, None);
        self.launch_range(kernel, (src, 0), n_blocks, (dst, 0), dtype, grid)
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        Ok(self.driver.synchronize()?)
    }

    /// [`check_foreign_memory`], then the driver's own check ([`Driver::wrap`]); every refusal
    /// is [`GpuError::ForeignMemory`] with the reason.
    #[allow(unsafe_code)] // the trait's contract, passed on to the driver
    unsafe fn wrap_device_memory(&self, ptr: u64, len: usize) -> Result<Buffer, GpuError> {
        check_foreign_memory(ptr, len)?;
        // SAFETY: the caller keeps the memory alive (this method's contract).
        let mem = unsafe { self.driver.wrap(ptr, len) }
            .map_err(|reason| GpuError::ForeignMemory { ptr, len, reason })?;
        Ok(self.buffer(mem))
    }

    #[allow(unsafe_code)] // the trait's contract, passed on to the driver
    unsafe fn make_stream_wait(&self, stream: usize) -> Result<(), GpuError> {
        // SAFETY: the caller vouches for the stream (this method's contract).
        Ok(unsafe { self.driver.make_stream_wait(stream) }?)
    }

    /// A pair of timing events around each run, read after the last run: the runs follow one
    /// another on the device as they would untimed.
    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError> {
        let mut pairs = Vec::with_capacity(iters.min(1 << 16));
        for _ in 0..iters {
            let (start, end) = (self.driver.timing_event()?, self.driver.timing_event()?);
            self.driver.record_timing(&start)?;
            op()?;
            self.driver.record_timing(&end)?;
            pairs.push((start, end));
        }
        pairs
            .iter()
            .map(|(start, end)| Ok(self.driver.elapsed_ms(start, end)?))
            .collect()
    }

    fn async_primitives(&self) -> bool {
        true
    }

    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        Ok(self.driver.alloc_host(bytes)?)
    }

    /// From this driver's page-locked memory: queued on `queue`'s stream, with `src`'s pending
    /// fence after it. From ordinary memory: a synchronous [`Backend::upload_at`]. From another
    /// backend's or device's page-locked memory: [`GpuError::ForeignBuffer`].
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        check_upload(&range, src.len(), dst_offset, dst.len())?;
        if !src.is_pinned() {
            return self.upload_at(&src.as_slice()[range], dst, dst_offset);
        }
        if !self.driver.owns_host(src) {
            return Err(GpuError::ForeignBuffer {
                op: "upload_async (host buffer)",
            });
        }
        let mem = self.mem_mut(dst, "upload_async")?;
        Ok(self
            .driver
            .upload_async(queue, src, range, mem, dst_offset)?)
    }

    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        check_region("upload_at", dst_offset, src.len(), dst.len())?;
        let mem = self.mem_mut(dst, "upload_at")?;
        Ok(self.driver.upload(src, mem, dst_offset)?)
    }

    fn upload_pageable(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        if dst.len() < src.len() {
            return Err(GpuError::BufferSize {
                op: "upload_pageable",
                have: dst.len(),
                need: src.len(),
            });
        }
        let mem = self.mem_mut(dst, "upload_pageable")?;
        Ok(self.driver.upload_pageable(src, mem)?)
    }

    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        let event = self.driver.record(queue)?;
        Ok(Fence::new(queue, Box::new(event)))
    }

    /// On the device for this driver's events; a fence of another backend is waited for on the
    /// host, which is always correct.
    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        let Some(raw) = fence.raw() else {
            return Ok(());
        };
        match raw.as_any().downcast_ref::<D::Event>() {
            Some(event) => Ok(self.driver.wait_event(queue, event)?),
            None => fence.wait(),
        }
    }

    fn dequantize_at(
        &self,
        queue: Queue,
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
            (queue, None),
        )
    }
    fn prepare_kernel(&self, kernel: &'static KernelSpec) -> Result<(), GpuError> {
        self.prepare(kernel)
    }
    fn resident_groups(
        &self,
        kernel: &'static KernelSpec,
        dtype: OutputDType,
    ) -> Result<Option<u64>, GpuError> {
        let module = self.module(kernel)?;
        let threads = kernel.threads_per_group;
        let per_mp = self
            .driver
            .groups_per_multiprocessor(&module, dtype, threads)?;
        Ok(Some(
            u64::from(per_mp) * u64::from(self.info().multiprocessors),
        ))
    }
    /// Checked and planned as on the compute queue ([`plan_launch`], the device's limits), then
    /// queued on the caller's stream ([`Driver::launch_on_stream`]).
    #[allow(unsafe_code)] // the trait's contract, passed on to the driver
    unsafe fn dequantize_on_stream(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        stream: usize,
    ) -> Result<(), GpuError> {
        let src = self.mem(src, "dequantize_on_stream")?;
        let dst = self.mem_mut(dst, "dequantize_on_stream")?;
        let regions = (
            BufferRegion::whole(src.len()),
            BufferRegion::whole(dst.len()),
        );
        let Some((plan, module)) = self.prepare_launch(kernel, n_blocks, regions, dtype)? else {
            return Ok(());
        };
        // SAFETY: the caller vouches for the stream and the buffers' lifetime (this method's
        // contract).
        unsafe {
            self.driver
                .launch_on_stream(&module, dtype, &plan, src, dst, stream)
        }
        .map_err(launch_error(kernel, dtype))
    }
}

/// A type that is a [`Backend`] by handing every call to another one: how a vendor's public
/// backend (a wrapper of a [`GpuBackend`] with the vendor's constructors) becomes a `Backend`
/// without repeating its methods.
pub trait DelegateBackend: Send + Sync {
    /// The backend that does the work.
    fn delegate(&self) -> &dyn Backend;
}

impl<T: DelegateBackend> Backend for T {
    fn info(&self) -> &DeviceInfo {
        self.delegate().info()
    }
    fn mem_info(&self) -> Result<MemInfo, GpuError> {
        self.delegate().mem_info()
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        self.delegate().alloc(bytes)
    }
    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.delegate().upload(src, dst)
    }
    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError> {
        self.delegate().download(src, dst)
    }
    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError> {
        self.delegate().fill(buf, value)
    }
    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        self.delegate().copy(src, dst)
    }
    fn copy_on(&self, queue: Queue, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        self.delegate().copy_on(queue, src, dst)
    }
    fn dequantize(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        self.delegate()
            .dequantize(kernel, src, n_blocks, dst, dtype)
    }
    fn synchronize(&self) -> Result<(), GpuError> {
        self.delegate().synchronize()
    }
    #[allow(unsafe_code)] // the trait's contract, passed on
    unsafe fn wrap_device_memory(&self, ptr: u64, len: usize) -> Result<Buffer, GpuError> {
        // SAFETY: this method's contract, which the caller keeps.
        unsafe { self.delegate().wrap_device_memory(ptr, len) }
    }
    #[allow(unsafe_code)] // the trait's contract, passed on
    unsafe fn make_stream_wait(&self, stream: usize) -> Result<(), GpuError> {
        // SAFETY: this method's contract, which the caller keeps.
        unsafe { self.delegate().make_stream_wait(stream) }
    }
    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError> {
        self.delegate().time_events(iters, op)
    }
    fn async_primitives(&self) -> bool {
        self.delegate().async_primitives()
    }
    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        self.delegate().alloc_host(bytes)
    }
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        self.delegate()
            .upload_async(queue, src, range, dst, dst_offset)
    }
    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        self.delegate().upload_at(src, dst, dst_offset)
    }
    fn upload_pageable(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.delegate().upload_pageable(src, dst)
    }
    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        self.delegate().record(queue)
    }
    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        self.delegate().wait_fence(queue, fence)
    }
    fn dequantize_at(
        &self,
        queue: Queue,
        kernel: &'static KernelSpec,
        src: &Buffer,
        src_offset: usize,
        n_blocks: u64,
        dst: &mut Buffer,
        dst_offset: usize,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        let at = (src_offset, dst_offset);
        self.delegate()
            .dequantize_at(queue, kernel, src, at.0, n_blocks, dst, at.1, dtype)
    }
    fn prepare_kernel(&self, kernel: &'static KernelSpec) -> Result<(), GpuError> {
        self.delegate().prepare_kernel(kernel)
    }
    fn resident_groups(
        &self,
        kernel: &'static KernelSpec,
        dtype: OutputDType,
    ) -> Result<Option<u64>, GpuError> {
        self.delegate().resident_groups(kernel, dtype)
    }
    #[allow(unsafe_code)] // the trait's contract, passed on
    unsafe fn dequantize_on_stream(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        stream: usize,
    ) -> Result<(), GpuError> {
        // SAFETY: this method's contract, which the caller keeps.
        unsafe {
            self.delegate()
                .dequantize_on_stream(kernel, src, n_blocks, dst, dtype, stream)
        }
    }
}

#[cfg(test)]
mod tests;
