//! [`HipDriver`]: the HIP side of [`quant_gpu::driver::Driver`], over [`crate::ffi`]. What it
//! adds to the FFI is its two streams, the staging of uploads and where code objects come from
//! ([`crate::code_object`]); everything a backend checks is in quant-gpu.

use std::ops::Range;
use std::sync::Arc;

use parking_lot::Mutex;
use quant_gpu::driver::{Driver, DriverError, DriverResult, Entries};
use quant_gpu::{
    ContextModules, DeviceInfo, DeviceKind, DeviceLimits, GpuError, HostBuffer, KernelSpec, Lanes,
    LaunchPlan, MemInfo, OutputDType, Queue, RawBuffer,
};

use crate::code_object;
use crate::ffi::{
    self, DeviceMem, Event, EventPool, Function, HipError, Module, PinnedMem, Stream,
};

/// Bytes per pinned staging buffer (there are two, used in turn).
const STAGING_CHUNK: usize = 16 << 20;

impl From<HipError> for DriverError {
    fn from(e: HipError) -> Self {
        DriverError {
            out_of_memory: e.is_out_of_memory(),
            reason: format!("{} ({}): {}", e.name, e.code, e.message),
            op: e.op,
        }
    }
}

/// One format's module on one device, with its three entry points.
pub(crate) struct LoadedModule {
    // The functions first: they are valid only while the module is loaded.
    entries: Entries<Function>,
    _module: Module,
}

/// Modules are shared by every backend of one device (HIP has one context per device).
static MODULES: ContextModules<usize, LoadedModule> = ContextModules::new();

/// Whether `host` is page-locked memory of device `ordinal` from this crate, which
/// `hipMemcpyHtoDAsync` copies from asynchronously.
pub(crate) fn owns_pinned(host: &HostBuffer, ordinal: usize) -> bool {
    host.raw()
        .as_any()
        .downcast_ref::<PinnedMem>()
        .is_some_and(|p| p.ordinal() == ordinal)
}

/// Staging for uploads: two pinned buffers used in turn, each with the event recorded after
/// its last copy.
struct Staging {
    bufs: [Option<PinnedMem>; 2],
    done: [Event; 2],
    pending: [bool; 2],
}

/// One AMD GPU: its streams, event pool and staging buffers.
///
/// Work runs on the compute stream ([`Queue::Compute`]: kernels, fills, device copies,
/// `upload`, `download`), the copy stream ([`Queue::Copy`]: asynchronous uploads) and the
/// streams of the lanes ([`Queue::Lane`], created on first use: a pipeline reader's copies and
/// kernels); [`Driver::synchronize`] drains them all. The compute stream is the driver's own
/// or an engine's, which it uses and never destroys.
pub(crate) struct HipDriver {
    info: DeviceInfo,
    limits: DeviceLimits,
    staging: Mutex<Staging>,
    /// Synchronisation events for fences, reused.
    events: Arc<EventPool>,
    // The streams are dropped last: each synchronizes before it is destroyed.
    lanes: Lanes<Arc<Stream>>,
    copy_stream: Stream,
    pub(crate) stream: Stream,
}

/// The stream of a queue: one of the driver's two, or a lane's.
enum QueueStream<'a> {
    Own(&'a Stream),
    Lane(Arc<Stream>),
}

impl std::ops::Deref for QueueStream<'_> {
    type Target = Stream;
    fn deref(&self) -> &Stream {
        match self {
            QueueStream::Own(s) => s,
            QueueStream::Lane(s) => s,
        }
    }
}

impl Drop for HipDriver {
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

impl HipDriver {
    /// The driver of device `ordinal` (which the caller has checked exists), with `engine` as
    /// its compute stream or a stream of its own.
    pub(crate) fn open(ordinal: usize, engine: Option<Stream>) -> Result<Self, HipError> {
        let props = ffi::device_props(ordinal)?;
        let info = DeviceInfo {
            kind: DeviceKind::Hip,
            ordinal,
            name: props.name,
            arch: code_object::base_arch(&props.gcn_arch_name).to_string(),
            total_memory: props.total_global_mem,
            warp_size: props.warp_size,
            multiprocessors: props.multiprocessors,
        };
        let stream = match engine {
            Some(s) => s,
            None => Stream::new(ordinal)?,
        };
        let copy_stream = Stream::new(ordinal)?;
        let staging = Staging {
            bufs: [None, None],
            done: [Event::new(ordinal)?, Event::new(ordinal)?],
            pending: [false, false],
        };
        Ok(HipDriver {
            info,
            limits: DeviceLimits {
                max_threads_per_group: props.max_threads_per_block,
                max_groups: props.max_grid_x.max(1),
            },
            staging: Mutex::new(staging),
            events: EventPool::new(ordinal),
            lanes: Lanes::default(),
            copy_stream,
            stream,
        })
    }

    /// The stream that serves `queue`; a lane's is created on its first use.
    fn stream_of(&self, queue: Queue) -> Result<QueueStream<'_>, HipError> {
        match queue {
            Queue::Compute => Ok(QueueStream::Own(&self.stream)),
            Queue::Copy => Ok(QueueStream::Own(&self.copy_stream)),
            Queue::Lane(lane) => {
                let make = || Stream::new(self.info.ordinal).map(Arc::new);
                Ok(QueueStream::Lane(self.lanes.get_or_create(lane, make)?))
            }
        }
    }

    /// Queues copies of `src` to `mem[offset..]` on the compute stream through the two pinned
    /// staging buffers, used in turn. Returns once `src` may be reused; the copies may still be
    /// in flight.
    fn staged_upload(&self, src: &[u8], mem: &DeviceMem, offset: usize) -> Result<(), HipError> {
        let mut st = self.staging.lock();
        let st = &mut *st;
        for (i, chunk) in src.chunks(STAGING_CHUNK).enumerate() {
            let k = i % 2;
            // Wait until the copy that last used this staging buffer has finished.
            if st.pending[k] {
                st.done[k].synchronize()?;
                st.pending[k] = false;
            }
            let buf = match &mut st.bufs[k] {
                Some(b) => b,
                slot => slot.insert(PinnedMem::alloc(self.info.ordinal, STAGING_CHUNK)?),
            };
            buf.as_mut_slice()[..chunk.len()].copy_from_slice(chunk);
            self.stream
                .copy_htod(mem, offset + i * STAGING_CHUNK, buf, chunk.len())?;
            if let Err(e) = st.done[k].record(&self.stream) {
                // The copy is queued but cannot be fenced: let it finish before the staging
                // buffer can be written again or freed.
                let _ = self.stream.synchronize();
                return Err(e);
            }
            st.pending[k] = true;
        }
        Ok(())
    }
}

impl RawBuffer for DeviceMem {
    fn len(&self) -> usize {
        DeviceMem::len(self)
    }
    fn device_ptr(&self) -> u64 {
        self.addr()
    }
    fn owns_memory(&self) -> bool {
        self.owned()
    }
    fn release(&mut self) {
        DeviceMem::release(self);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Driver for HipDriver {
    type Mem = DeviceMem;
    type Module = LoadedModule;
    type Event = Event;
    type TimingEvent = Event;
    type Scope = usize;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn limits(&self) -> DeviceLimits {
        self.limits
    }

    fn mem_info(&self) -> DriverResult<MemInfo> {
        let (free, total) = ffi::mem_info(self.info.ordinal)?;
        Ok(MemInfo { free, total })
    }

    fn alloc(&self, bytes: usize) -> DriverResult<DeviceMem> {
        Ok(DeviceMem::alloc(self.info.ordinal, bytes)?)
    }

    #[allow(unsafe_code)] // the trait's contract; the runtime calls are in `ffi`
    unsafe fn wrap(&self, ptr: u64, len: usize) -> Result<DeviceMem, String> {
        // SAFETY: the caller keeps the memory alive (this method's contract).
        unsafe { DeviceMem::wrap(self.info.ordinal, ptr, len) }
    }

    /// `bytes` zeroed bytes of page-locked memory (`hipHostMalloc`) of this device.
    fn alloc_host(&self, bytes: usize) -> DriverResult<HostBuffer> {
        let pinned = PinnedMem::alloc(self.info.ordinal, bytes)?;
        Ok(HostBuffer::new(Box::new(pinned)))
    }

    fn owns_host(&self, host: &HostBuffer) -> bool {
        owns_pinned(host, self.info.ordinal)
    }

    /// Through the staging buffers on the compute stream, then a wait for the stream.
    fn upload(&self, src: &[u8], dst: &mut DeviceMem, offset: usize) -> DriverResult<()> {
        self.staged_upload(src, dst, offset)?;
        Ok(self.stream.synchronize()?)
    }

    /// `hipMemcpyHtoDAsync` on `queue`'s stream, then an event after it as `src`'s pending
    /// fence.
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut DeviceMem,
        offset: usize,
    ) -> DriverResult<()> {
        let event = self.events.get()?;
        Ok(self
            .stream_of(queue)?
            .upload_async(queue, src, range, dst, offset, event)?)
    }

    fn download(&self, src: &DeviceMem, dst: &mut [u8]) -> DriverResult<()> {
        Ok(self.stream.copy_dtoh_sync(dst, src)?)
    }

    fn memset(&self, dst: &mut DeviceMem, value: u8) -> DriverResult<()> {
        Ok(self.stream.memset(dst, value)?)
    }

    fn copy(
        &self,
        queue: Queue,
        src: &DeviceMem,
        dst: &mut DeviceMem,
        bytes: usize,
    ) -> DriverResult<()> {
        Ok(self.stream_of(queue)?.copy_dtod(dst, src, bytes)?)
    }

    fn synchronize(&self) -> DriverResult<()> {
        self.copy_stream.synchronize()?;
        for lane in self.lanes.all() {
            lane.synchronize()?;
        }
        Ok(self.stream.synchronize()?)
    }

    fn record(&self, queue: Queue) -> DriverResult<Event> {
        let event = self.events.get()?;
        event.record(&*self.stream_of(queue)?)?;
        Ok(event)
    }

    /// `hipStreamWaitEvent` (an error for another device's event).
    fn wait_event(&self, queue: Queue, event: &Event) -> DriverResult<()> {
        Ok(self.stream_of(queue)?.wait_event(event)?)
    }

    /// An event recorded on each of the driver's streams, and `hipStreamWaitEvent` of `stream`
    /// on both. On HIP `0` is allowed: the device's null stream (what DLPack's `stream=0` means
    /// on ROCm). `1` and `2` are refused (DLPack allows neither on ROCm; in HIP they are
    /// `hipStreamLegacy` and `hipStreamPerThread`), before any runtime call.
    #[allow(unsafe_code)] // the trait's contract; the runtime calls are in `ffi`
    unsafe fn make_stream_wait(&self, stream: usize) -> DriverResult<()> {
        let lanes = self.lanes.all();
        let mut streams = vec![&self.stream, &self.copy_stream];
        streams.extend(lanes.iter().map(|l| &**l));
        // SAFETY: the caller vouches for the stream (this method's contract).
        Ok(unsafe { ffi::make_stream_wait(&self.events, &streams, stream) }?)
    }

    fn timing_event(&self) -> DriverResult<Event> {
        Ok(Event::new(self.info.ordinal)?)
    }

    fn record_timing(&self, event: &Event) -> DriverResult<()> {
        Ok(event.record(&self.stream)?)
    }

    fn elapsed_ms(&self, start: &Event, end: &Event) -> DriverResult<f32> {
        end.synchronize()?;
        Ok(end.elapsed_since(start)?)
    }

    fn module_scope(&self) -> usize {
        self.info.ordinal
    }

    fn module_registry() -> &'static ContextModules<usize, LoadedModule> {
        &MODULES
    }

    /// The code object [`code_object::resolve`] finds for this device, loaded, and its three
    /// entry points; every failure is a [`GpuError::CodeObject`] naming the file.
    fn load_module(&self, spec: &'static KernelSpec) -> Result<LoadedModule, GpuError> {
        let co = code_object::resolve(spec, &self.info.arch)?;
        let module =
            Module::load(self.info.ordinal, &co.bytes).map_err(|e| GpuError::CodeObject {
                path: co.path.clone(),
                reason: format!("the HIP runtime refused it: {e}"),
            })?;
        let entries = Entries::load(spec, |entry| {
            module.function(entry).map_err(|e| GpuError::CodeObject {
                path: co.path.clone(),
                reason: format!("no entry point {entry} (from {}): {e}", spec.file_name),
            })
        })?;
        Ok(LoadedModule {
            entries,
            _module: module,
        })
    }

    fn groups_per_multiprocessor(
        &self,
        module: &LoadedModule,
        dtype: OutputDType,
        threads: u32,
    ) -> DriverResult<u32> {
        Ok(module
            .entries
            .get(dtype)
            .groups_per_multiprocessor(threads)?)
    }

    fn launch(
        &self,
        queue: Queue,
        module: &LoadedModule,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &DeviceMem,
        dst: &mut DeviceMem,
    ) -> DriverResult<()> {
        Ok(self
            .stream_of(queue)?
            .launch_dequant(module.entries.get(dtype), plan, src, dst)?)
    }

    /// On the caller's `hipStream_t` of this device (`0`: the device's null stream); the
    /// sentinels `1` and `2` are refused before any runtime call.
    #[allow(unsafe_code)] // the trait's contract; the runtime calls are in `ffi`
    unsafe fn launch_on_stream(
        &self,
        module: &LoadedModule,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &DeviceMem,
        dst: &mut DeviceMem,
        stream: usize,
    ) -> DriverResult<()> {
        let raw = stream as hip_runtime_sys::hipStream_t;
        // SAFETY: the caller vouches for the stream (this method's contract); the borrowed
        // handle is used for this launch only and never destroyed.
        let stream = unsafe { Stream::borrowed(self.info.ordinal, raw) }?;
        Ok(stream.launch_dequant(module.entries.get(dtype), plan, src, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use quant_gpu::{Buffer, DeviceKind};

    use super::*;

    #[test]
    fn only_this_devices_pinned_memory_is_copied_from_asynchronously() {
        use crate::ffi::tests::OtherPinned;
        let own = HostBuffer::new(Box::new(PinnedMem::empty_for_test(2)));
        assert!(owns_pinned(&own, 2));
        // Another device's, another backend's page-locked memory, ordinary memory.
        assert!(!owns_pinned(&own, 3));
        assert!(!owns_pinned(
            &HostBuffer::new(Box::new(OtherPinned(vec![0; 16]))),
            0
        ));
        assert!(!owns_pinned(&HostBuffer::pageable(16), 0));
    }

    /// What a HIP buffer hands over: its address, whether it owns the memory, and after
    /// `into_raw` nothing (the released memory is not freed when the buffer goes).
    #[test]
    fn buffers_hand_over_their_address_and_allocation() {
        let addr = 0x7f00_0000_1000;
        let owned = Buffer::new(
            Box::new(DeviceMem::fake_for_test(addr, 64, true)),
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
            Box::new(DeviceMem::fake_for_test(addr + 256, 16, false)),
            DeviceKind::Hip,
            0,
        );
        assert!(!wrapped.owns_memory());
        let raw = wrapped.into_raw();
        assert!(!raw.owned && raw.ptr == addr + 256 && raw.len == 16);
    }

    #[test]
    fn runtime_errors_keep_the_call_and_out_of_memory() {
        let e = HipError {
            op: "hipMalloc(64 bytes on device 0)".into(),
            code: hip_runtime_sys::hipError_t::hipErrorOutOfMemory as u32,
            name: "hipErrorOutOfMemory".into(),
            message: "out of memory".into(),
        };
        let d = DriverError::from(e);
        assert_eq!(d.op, "hipMalloc(64 bytes on device 0)");
        assert!(
            d.reason.starts_with("hipErrorOutOfMemory ("),
            "{}",
            d.reason
        );
        assert!(d.out_of_memory);
    }

    #[test]
    fn modules_are_shared_per_device() {
        // The registry's per-scope behaviour is tested in quant-gpu.
        assert!(std::ptr::eq(
            HipDriver::module_registry(),
            HipDriver::module_registry()
        ));
        assert!(HipDriver::module_registry()
            .get(&usize::MAX)
            .get(&"no such format")
            .is_none());
    }
}
