//! [`HipBackend`]: the safe backend over [`crate::ffi`].

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use quant_gpu::{
    check_region, check_upload, plan_launch, Backend, Buffer, BufferRegion, DeviceInfo, DeviceKind,
    DeviceLimits, Fence, GpuError, HostBuffer, KernelSpec, MemInfo, ModuleCache, OutputDType,
    Queue, RawBuffer,
};

use hip_runtime_sys::{hipDevice_t, hipStream_t};

use crate::code_object;
use crate::ffi::{
    self, DeviceMem, Event, EventPool, Function, HipError, Module, PinnedMem, Stream,
};

/// Bytes per pinned staging buffer (there are two, used in turn).
const STAGING_CHUNK: usize = 16 << 20;

fn driver(e: HipError) -> GpuError {
    GpuError::Driver {
        op: e.op.clone(),
        reason: format!("{} ({}): {}", e.name, e.code, e.message),
    }
}

fn no_device(ordinal: usize, reason: String) -> GpuError {
    GpuError::NoDevice {
        kind: DeviceKind::Hip,
        ordinal,
        reason,
    }
}

/// Number of AMD GPUs the HIP runtime sees. [`GpuError::NoDevice`] when there is none (a
/// machine without an AMD GPU, or without `/dev/kfd` access): never a panic.
pub fn device_count() -> Result<usize, GpuError> {
    match ffi::device_count() {
        Ok(0) => Err(no_device(0, "the HIP runtime reports no AMD GPU".into())),
        Ok(n) => Ok(n),
        Err(e) => Err(no_device(0, e.to_string())),
    }
}

/// Version of the HIP runtime library linked (`hipRuntimeGetVersion`), e.g. 50221153 for
/// Debian's ROCm 5.2. Works without a device.
pub fn runtime_version() -> Result<i32, GpuError> {
    ffi::runtime_version().map_err(driver)
}

/// Device memory of a [`HipBackend`].
#[derive(Debug)]
pub struct HipBuffer {
    mem: DeviceMem,
}

impl RawBuffer for HipBuffer {
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
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// One format's module on one device, with its three entry points.
struct LoadedModule {
    // Functions first: they are only valid while the module is loaded.
    f32: Function,
    f16: Function,
    bf16: Function,
    _module: Module,
}

impl LoadedModule {
    fn function(&self, dtype: OutputDType) -> &Function {
        match dtype {
            OutputDType::F32 => &self.f32,
            OutputDType::F16 => &self.f16,
            OutputDType::Bf16 => &self.bf16,
        }
    }
}

/// Modules of the whole process, one per (device ordinal, format): two backends on one device
/// share them. Each key has its own slot, so that loading one format does not block another
/// and concurrent first users of one format load it once.
fn modules() -> &'static ModuleCache<(usize, &'static str), LoadedModule> {
    static MODULES: OnceLock<ModuleCache<(usize, &'static str), LoadedModule>> = OnceLock::new();
    MODULES.get_or_init(ModuleCache::new)
}

/// The page-locked memory behind `src` if it is this backend's: HIP pinned memory of device
/// `ordinal`. Anything else (another backend's page-locked memory, another device's) is a
/// [`GpuError::ForeignBuffer`]: it cannot be copied from asynchronously here.
fn own_pinned(src: &HostBuffer, ordinal: usize) -> Result<&PinnedMem, GpuError> {
    const OP: &str = "upload_async (host buffer)";
    match src.raw().as_any().downcast_ref::<PinnedMem>() {
        Some(p) if p.ordinal() == ordinal => Ok(p),
        _ => Err(GpuError::ForeignBuffer { op: OP }),
    }
}

/// What a [`Fence`] handed to [`Backend::wait_fence`] holds.
#[derive(Debug)]
enum FenceKind<'a> {
    /// Complete already ([`Fence::done`]): nothing to wait for.
    Done,
    /// A HIP event: the queue waits for it on the device.
    Hip(&'a Event),
    /// Another backend's marker: waited for on the host.
    Foreign,
}

fn fence_kind(fence: &Fence) -> FenceKind<'_> {
    match fence.raw() {
        None => FenceKind::Done,
        Some(raw) => match raw.as_any().downcast_ref::<Event>() {
            Some(e) => FenceKind::Hip(e),
            None => FenceKind::Foreign,
        },
    }
}

/// Staging for uploads: two pinned buffers used in turn, each with the event recorded after
/// its last copy.
struct Staging {
    bufs: [Option<PinnedMem>; 2],
    done: [Event; 2],
    pending: [bool; 2],
}

/// An AMD GPU through the HIP runtime (`libamdhip64`), running HSACO code objects built ahead
/// of time.
///
/// Work runs on two streams: the compute stream ([`Queue::Compute`]: kernels, fills, device
/// copies, `upload`, `download`) and the copy stream ([`Queue::Copy`]: the pipeline's
/// asynchronous uploads). [`Backend::synchronize`] drains both. Both are non-blocking streams of
/// the backend's own ([`HipBackend::new`]), or the compute stream is an engine's
/// ([`HipBackend::on_stream`]), which the backend uses and never destroys.
pub struct HipBackend {
    info: DeviceInfo,
    max_threads_per_block: u32,
    max_grid_x: u32,
    staging: Mutex<Staging>,
    /// Synchronisation events for fences, reused.
    events: Arc<EventPool>,
    // The streams are dropped last: each synchronizes before it is destroyed.
    copy_stream: Stream,
    stream: Stream,
}

impl Drop for HipBackend {
    fn drop(&mut self) {
        // Let queued copies out of the staging buffers finish before those are freed: they
        // are on the compute stream, each followed by its event. Waiting for those events
        // rather than the stream leaves an engine's other work on its stream alone; a stream
        // of our own synchronizes anyway when it is destroyed, after this.
        let _ = self.copy_stream.synchronize();
        let st = self.staging.get_mut();
        for (done, pending) in st.done.iter().zip(st.pending) {
            if pending {
                let _ = done.synchronize();
            }
        }
    }
}

impl std::fmt::Debug for HipBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HipBackend")
            .field("info", &self.info)
            .finish()
    }
}

impl HipBackend {
    /// Opens AMD GPU `ordinal`, with two non-blocking streams of its own.
    /// [`GpuError::NoDevice`] if there is no such device.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        Self::open(ordinal, None)
    }

    /// Opens AMD GPU `device` on an engine's `stream` of that device: every kernel and every
    /// synchronous copy (`upload`, `upload_at`, `download`, `fill`, `copy`) is queued on
    /// `stream`, so the engine's later work on it is ordered after them without a
    /// synchronisation. The pipelined load's copy queue ([`Queue::Copy`]) keeps a non-blocking
    /// stream of the backend's own, whose copies the kernels on `stream` wait for through
    /// events; [`Backend::make_stream_wait`] orders any other stream. [`Backend::synchronize`]
    /// synchronizes `stream` too (all of the engine's work queued on it so far).
    ///
    /// `device` is the ordinal (`hipGetDevice`, `torch.cuda.current_device()` on ROCm; HIP's
    /// `hipDevice_t` from `hipDeviceGet` is the same number). A null `stream` is the device's
    /// null stream (PyTorch's default stream on ROCm). The sentinels `1` (`hipStreamLegacy`)
    /// and `2` (`hipStreamPerThread`, a different stream in each host thread, while loads issue
    /// work from several) are refused, as are a negative ordinal and a device the runtime does
    /// not see ([`GpuError::NoDevice`]); all of that is checked before the stream is used. The
    /// backend never destroys `stream`; dropping it waits only for its own copies out of its
    /// staging buffers, not for the engine's work. Tensors loaded through it live in the
    /// device's memory as with [`HipBackend::new`].
    ///
    /// # Safety
    /// `stream` must be null or a live stream of device `device`, and must outlive the backend
    /// (and the work it queued). The runtime cannot check this (ROCm 5.2 has no
    /// `hipStreamGetDevice`).
    #[allow(unsafe_code)] // the caller's contract; the runtime calls are in `ffi`
    pub unsafe fn on_stream(device: hipDevice_t, stream: hipStream_t) -> Result<Self, GpuError> {
        let ordinal = usize::try_from(device).map_err(|_| GpuError::Driver {
            op: "HipBackend::on_stream".into(),
            reason: format!("device {device} is not a HIP device ordinal"),
        })?;
        // SAFETY: forwarded from this function's contract.
        let engine = unsafe { Stream::borrowed(ordinal, stream) }.map_err(driver)?;
        Self::open(ordinal, Some(engine))
    }

    /// The raw handle of the compute stream, on which kernels are queued (the engine's, with
    /// [`HipBackend::on_stream`]). Valid while the backend lives (and, for an engine's stream,
    /// while the engine keeps it).
    pub fn compute_stream(&self) -> hipStream_t {
        self.stream.raw()
    }

    /// The engine's stream, when opened with [`HipBackend::on_stream`] (null: the device's
    /// null stream).
    pub fn engine_stream(&self) -> Option<hipStream_t> {
        (!self.stream.is_owned()).then(|| self.stream.raw())
    }

    /// Opens device `ordinal` with `engine` as its compute stream, or a stream of its own.
    fn open(ordinal: usize, engine: Option<Stream>) -> Result<Self, GpuError> {
        let n = device_count().map_err(|e| match e {
            GpuError::NoDevice { reason, .. } => no_device(ordinal, reason),
            other => other,
        })?;
        if ordinal >= n {
            return Err(no_device(
                ordinal,
                format!("the HIP runtime sees {n} device(s)"),
            ));
        }
        let props = ffi::device_props(ordinal).map_err(driver)?;
        let arch = code_object::base_arch(&props.gcn_arch_name).to_string();
        let info = DeviceInfo {
            kind: DeviceKind::Hip,
            ordinal,
            name: props.name,
            arch,
            total_memory: props.total_global_mem,
            warp_size: props.warp_size,
            multiprocessors: props.multiprocessors,
        };
        let stream = match engine {
            Some(s) => s,
            None => Stream::new(ordinal).map_err(driver)?,
        };
        let copy_stream = Stream::new(ordinal).map_err(driver)?;
        let staging = Staging {
            bufs: [None, None],
            done: [
                Event::new(ordinal).map_err(driver)?,
                Event::new(ordinal).map_err(driver)?,
            ],
            pending: [false, false],
        };
        Ok(HipBackend {
            info,
            max_threads_per_block: props.max_threads_per_block,
            max_grid_x: props.max_grid_x.max(1),
            staging: Mutex::new(staging),
            events: EventPool::new(ordinal),
            copy_stream,
            stream,
        })
    }

    /// The stream that serves `queue`.
    fn stream_of(&self, queue: Queue) -> &Stream {
        match queue {
            Queue::Compute => &self.stream,
            Queue::Copy => &self.copy_stream,
        }
    }

    /// Queues copies of `src` to `mem[offset..]` on the compute stream through the two pinned
    /// staging buffers, used in turn. `offset + src.len()` must fit (checked by the callers and
    /// again by the wrapper). Returns once `src` may be reused; the copies may still be in
    /// flight.
    fn staged_upload(&self, src: &[u8], mem: &DeviceMem, offset: usize) -> Result<(), GpuError> {
        let mut st = self.staging.lock();
        let st = &mut *st;
        for (i, chunk) in src.chunks(STAGING_CHUNK).enumerate() {
            let k = i % 2;
            // Wait until the copy that last used this staging buffer has finished.
            if st.pending[k] {
                st.done[k].synchronize().map_err(driver)?;
                st.pending[k] = false;
            }
            let buf = match &mut st.bufs[k] {
                Some(b) => b,
                slot => {
                    slot.insert(PinnedMem::alloc(self.info.ordinal, STAGING_CHUNK).map_err(driver)?)
                }
            };
            buf.as_mut_slice()[..chunk.len()].copy_from_slice(chunk);
            self.stream
                .copy_htod(mem, offset + i * STAGING_CHUNK, buf, chunk.len())
                .map_err(driver)?;
            if let Err(e) = st.done[k].record(&self.stream) {
                // The copy is queued but cannot be fenced: let it finish before the staging
                // buffer can be written again or freed.
                let _ = self.stream.synchronize();
                return Err(driver(e));
            }
            st.pending[k] = true;
        }
        Ok(())
    }

    fn mem<'a>(&self, buf: &'a Buffer, op: &'static str) -> Result<&'a DeviceMem, GpuError> {
        if buf.device() != (DeviceKind::Hip, self.info.ordinal) {
            return Err(GpuError::ForeignBuffer { op });
        }
        buf.raw()
            .as_any()
            .downcast_ref::<HipBuffer>()
            .map(|b| &b.mem)
            .ok_or(GpuError::ForeignBuffer { op })
    }

    /// The module of `spec` on this device: loaded on first use, then cached.
    fn module(&self, spec: &'static KernelSpec) -> Result<Arc<LoadedModule>, GpuError> {
        modules().get_or_try_init((self.info.ordinal, spec.format), || {
            Self::load_module(self.info.ordinal, &self.info.arch, spec)
        })
    }

    fn load_module(
        ordinal: usize,
        arch: &str,
        spec: &'static KernelSpec,
    ) -> Result<LoadedModule, GpuError> {
        let co = code_object::resolve(spec, arch)?;
        let module = Module::load(ordinal, &co.bytes).map_err(|e| GpuError::CodeObject {
            path: co.path.clone(),
            reason: format!("the HIP runtime refused it: {e}"),
        })?;
        let get = |entry: &str| {
            module.function(entry).map_err(|e| GpuError::CodeObject {
                path: co.path.clone(),
                reason: format!("no entry point {entry} (from {}): {e}", spec.file_name),
            })
        };
        Ok(LoadedModule {
            f32: get(spec.entry_f32)?,
            f16: get(spec.entry_f16)?,
            bf16: get(spec.entry_bf16)?,
            _module: module,
        })
    }

    /// This device's launch limits.
    fn limits(&self) -> DeviceLimits {
        DeviceLimits {
            max_threads_per_group: self.max_threads_per_block,
            max_groups: self.max_grid_x,
        }
    }

    /// The one launch path: `n_blocks` blocks at `src[src_offset..]` into `dst[dst_offset..]`,
    /// checked and sized by [`plan_launch`]. Zero blocks return before any module is loaded.
    #[allow(clippy::too_many_arguments)]
    fn launch_range(
        &self,
        kernel: &'static KernelSpec,
        (src, src_offset): (&Buffer, usize),
        n_blocks: u64,
        (dst, dst_offset): (&Buffer, usize),
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        let s = self.mem(src, "dequantize")?;
        let d = self.mem(dst, "dequantize")?;
        let plan = plan_launch(
            kernel,
            n_blocks,
            BufferRegion::new(s.len(), src_offset),
            BufferRegion::new(d.len(), dst_offset),
            dtype,
            self.limits(),
        )?;
        if plan.is_empty() {
            return Ok(());
        }
        let module = self.module(kernel)?;
        self.stream
            .launch_dequant(module.function(dtype), &plan, s, d)
            .map_err(|e| GpuError::Launch {
                entry: kernel.entry(dtype),
                file: kernel.file_name,
                reason: e.to_string(),
            })
    }
}

impl Backend for HipBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn mem_info(&self) -> Result<MemInfo, GpuError> {
        let (free, total) = ffi::mem_info(self.info.ordinal).map_err(driver)?;
        Ok(MemInfo { free, total })
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        let mem = DeviceMem::alloc(self.info.ordinal, bytes).map_err(|e| {
            if e.is_out_of_memory() {
                let (free, total) = ffi::mem_info(self.info.ordinal).unwrap_or((0, 0));
                GpuError::OutOfMemory {
                    device: self.info.to_string(),
                    wanted: bytes as u64,
                    free,
                    total,
                }
            } else {
                driver(e)
            }
        })?;
        Ok(Buffer::new(
            Box::new(HipBuffer { mem }),
            DeviceKind::Hip,
            self.info.ordinal,
        ))
    }

    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        let mem = self.mem(dst, "upload")?;
        if src.len() > mem.len() {
            return Err(GpuError::BufferSize {
                op: "upload",
                have: mem.len(),
                need: src.len(),
            });
        }
        self.staged_upload(src, mem, 0)
    }

    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError> {
        let mem = self.mem(src, "download")?;
        if dst.len() > mem.len() {
            return Err(GpuError::BufferSize {
                op: "download",
                have: mem.len(),
                need: dst.len(),
            });
        }
        self.stream.copy_dtoh_sync(dst, mem).map_err(driver)
    }

    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError> {
        let mem = self.mem(buf, "fill")?;
        self.stream.memset(mem, value).map_err(driver)
    }

    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        let s = self.mem(src, "copy")?;
        let d = self.mem(dst, "copy")?;
        if s.len() != d.len() {
            return Err(GpuError::BufferSize {
                op: "copy",
                have: d.len(),
                need: s.len(),
            });
        }
        self.stream.copy_dtod(d, s, s.len()).map_err(driver)
    }

    fn dequantize(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        self.launch_range(kernel, (src, 0), n_blocks, (dst, 0), dtype)
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
        )
    }

    /// Waits for all work queued on both streams.
    fn synchronize(&self) -> Result<(), GpuError> {
        self.copy_stream.synchronize().map_err(driver)?;
        self.stream.synchronize().map_err(driver)
    }

    /// The caller's device memory, checked ([`quant_gpu::check_foreign_memory`], then
    /// `hipPointerGetAttributes`: device memory of this device; `hipMemGetAddressRange`:
    /// `[ptr, ptr + len)` inside one allocation) and wrapped without ownership: the buffer
    /// never frees it. Every refusal is [`GpuError::ForeignMemory`] with the reason.
    #[allow(unsafe_code)] // the trait's contract; the runtime calls are in `ffi`
    unsafe fn wrap_device_memory(&self, ptr: u64, len: usize) -> Result<Buffer, GpuError> {
        // SAFETY: the caller keeps the memory alive (this method's contract).
        let mem = unsafe { DeviceMem::wrap(self.info.ordinal, ptr, len) }?;
        Ok(Buffer::new(
            Box::new(HipBuffer { mem }),
            DeviceKind::Hip,
            self.info.ordinal,
        ))
    }

    /// An event recorded on each of the backend's streams, and `hipStreamWaitEvent` of
    /// `stream` on both. On HIP `0` is allowed: the device's null stream (what DLPack's
    /// `stream=0` means on ROCm). `1` and `2` are refused (DLPack allows neither on ROCm; in
    /// HIP they are `hipStreamLegacy` and `hipStreamPerThread`), before any runtime call.
    #[allow(unsafe_code)] // the trait's contract; the runtime calls are in `ffi`
    unsafe fn make_stream_wait(&self, stream: usize) -> Result<(), GpuError> {
        // SAFETY: the caller vouches for the stream (this method's contract).
        unsafe { ffi::make_stream_wait(&self.events, &[&self.stream, &self.copy_stream], stream) }
            .map_err(driver)
    }

    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError> {
        let start = Event::new(self.info.ordinal).map_err(driver)?;
        let stop = Event::new(self.info.ordinal).map_err(driver)?;
        let mut times = Vec::with_capacity(iters.min(1 << 16));
        for _ in 0..iters {
            start.record(&self.stream).map_err(driver)?;
            op()?;
            stop.record(&self.stream).map_err(driver)?;
            stop.synchronize().map_err(driver)?;
            times.push(stop.elapsed_since(&start).map_err(driver)?);
        }
        Ok(times)
    }

    fn async_primitives(&self) -> bool {
        // Everything below is implemented: `new` does not return without the copy stream.
        true
    }

    /// `bytes` zeroed bytes of page-locked memory (`hipHostMalloc`) of this device.
    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        let p = PinnedMem::alloc(self.info.ordinal, bytes).map_err(driver)?;
        Ok(HostBuffer::new(Box::new(p)))
    }

    /// From this backend's pinned memory: `hipMemcpyHtoDAsync` on `queue`'s stream, then an
    /// event after it as `src`'s pending fence. From ordinary memory (as the trait's default
    /// `alloc_host` gives): a synchronous [`Backend::upload_at`]. From another backend's or
    /// device's pinned memory: [`GpuError::ForeignBuffer`].
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        let mem = self.mem(dst, "upload_async")?;
        check_upload(&range, src.len(), dst_offset, mem.len())?;
        if !src.is_pinned() {
            return self.upload_at(&src.as_slice()[range], dst, dst_offset);
        }
        own_pinned(src, self.info.ordinal)?;
        let event = self.events.get().map_err(driver)?;
        self.stream_of(queue)
            .upload_async(queue, src, range, mem, dst_offset, event)
            .map_err(driver)
    }

    /// Through the staging buffers on the compute stream; returns once the bytes have landed.
    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        let mem = self.mem(dst, "upload_at")?;
        check_region("upload_at", dst_offset, src.len(), mem.len())?;
        self.staged_upload(src, mem, dst_offset)?;
        self.stream.synchronize().map_err(driver)
    }

    /// An event recorded on `queue`'s stream.
    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        let event = self.events.get().map_err(driver)?;
        event.record(self.stream_of(queue)).map_err(driver)?;
        Ok(Fence::new(queue, Box::new(event)))
    }

    /// `hipStreamWaitEvent` for a HIP event (an error for another device's); a fence of another
    /// backend is waited for on the host, which is always correct.
    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        match fence_kind(fence) {
            FenceKind::Done => Ok(()),
            FenceKind::Hip(e) => self.stream_of(queue).wait_event(e).map_err(driver),
            FenceKind::Foreign => fence.wait(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without an AMD GPU (no `/dev/kfd`) every entry point says NoDevice, with the
    /// ordinal asked for, and never panics. With a GPU the same calls must succeed.
    #[test]
    fn no_device_is_an_error_not_a_panic() {
        let has_kfd = std::path::Path::new("/dev/kfd").exists();
        match device_count() {
            Err(GpuError::NoDevice {
                kind,
                ordinal,
                reason,
            }) => {
                assert_eq!(kind, DeviceKind::Hip);
                assert_eq!(ordinal, 0);
                assert!(!reason.is_empty());
            }
            Ok(n) => assert!(has_kfd && n > 0, "device_count() = {n} without /dev/kfd"),
            Err(other) => panic!("expected NoDevice, got {other}"),
        }
        if has_kfd {
            return;
        }
        for ordinal in [0, 3] {
            match HipBackend::new(ordinal) {
                Err(GpuError::NoDevice {
                    kind,
                    ordinal: o,
                    reason,
                }) => {
                    assert_eq!(kind, DeviceKind::Hip);
                    assert_eq!(o, ordinal);
                    assert!(reason.contains("hipErrorNoDevice"), "{reason}");
                }
                Err(other) => panic!("expected NoDevice, got {other}"),
                Ok(b) => panic!("opened {:?} without a GPU", b.info()),
            }
        }
        // Device calls underneath report errors too.
        assert!(ffi::device_props(0).is_err());
        assert!(ffi::mem_info(0).is_err());
        assert!(DeviceMem::alloc(0, 16).is_err());
    }

    #[test]
    fn only_this_devices_pinned_memory_is_copied_from_asynchronously() {
        use crate::ffi::tests::OtherPinned;
        let own = HostBuffer::new(Box::new(PinnedMem::empty_for_test(2)));
        assert!(own_pinned(&own, 2).is_ok());
        let refused = [
            // Another device's.
            (own, 3),
            // Another backend's page-locked memory.
            (HostBuffer::new(Box::new(OtherPinned(vec![0; 16]))), 0),
            // Ordinary memory (upload_async copies it synchronously instead).
            (HostBuffer::pageable(16), 0),
        ];
        for (h, ordinal) in &refused {
            assert!(
                matches!(
                    own_pinned(h, *ordinal),
                    Err(GpuError::ForeignBuffer {
                        op: "upload_async (host buffer)"
                    })
                ),
                "{h:?}"
            );
        }
    }

    #[derive(Debug)]
    struct OtherFence;
    impl quant_gpu::RawFence for OtherFence {
        fn wait(&self) -> Result<(), GpuError> {
            Ok(())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn fences_are_told_apart() {
        assert!(matches!(
            fence_kind(&Fence::done(Queue::Copy)),
            FenceKind::Done
        ));
        let hip = Fence::new(Queue::Copy, Box::new(Event::null_for_test(0)));
        assert!(matches!(fence_kind(&hip), FenceKind::Hip(_)));
        let other = Fence::new(Queue::Compute, Box::new(OtherFence));
        assert!(matches!(fence_kind(&other), FenceKind::Foreign));
    }

    /// What a HIP buffer hands over: its address, whether it owns the memory, and after
    /// `into_raw` nothing (the released memory is not freed when the buffer goes).
    #[test]
    fn buffers_hand_over_their_address_and_allocation() {
        let addr = 0x7f00_0000_1000;
        let owned = Buffer::new(
            Box::new(HipBuffer {
                mem: DeviceMem::fake_for_test(addr, 64, true),
            }),
            DeviceKind::Hip,
            3,
        );
        assert_eq!(owned.device_ptr(), addr);
        assert!(owned.owns_memory());
        let raw = owned.into_raw();
        assert_eq!(
            raw,
            quant_gpu::RawAllocation {
                ptr: addr,
                len: 64,
                device: (DeviceKind::Hip, 3),
                owned: true,
            }
        );
        // Wrapped memory was never ours: nothing changes hands.
        let wrapped = Buffer::new(
            Box::new(HipBuffer {
                mem: DeviceMem::fake_for_test(addr + 256, 16, false),
            }),
            DeviceKind::Hip,
            0,
        );
        assert!(!wrapped.owns_memory());
        let raw = wrapped.into_raw();
        assert!(!raw.owned && raw.ptr == addr + 256 && raw.len == 16);
    }

    #[test]
    fn the_runtime_is_linked_and_answers() {
        // Debian's ROCm 5.2 reports 502xxxxx; any ROCm 5 or later will do.
        let v = runtime_version().unwrap();
        assert!(v >= 50_000_000, "hipRuntimeGetVersion = {v}");
    }

    #[test]
    fn module_cache_is_shared_per_device_and_format() {
        // The process-wide cache is one object; its per-key behaviour is tested in quant-gpu.
        assert!(std::ptr::eq(modules(), modules()));
        assert!(modules().get(&(usize::MAX, "no such format")).is_none());
    }
}
