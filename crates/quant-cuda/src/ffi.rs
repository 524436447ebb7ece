//! The thin unsafe layer: every call into the CUDA driver and NVRTC goes through here, and every
//! `unsafe` block of the crate lives in this file.
//!
//! The types here own driver resources (device memory, pinned host memory, events, modules,
//! one stream) and free them on drop. Their methods are safe: each one binds the context to the
//! calling thread, checks the sizes it is handed, and returns the driver's error as text. Host
//! memory is only touched by the device inside methods that wait for the copy to finish, so no
//! caller can observe a copy in flight.

use std::ffi::{c_void, CString};
use std::sync::{Arc, OnceLock};

use cudarc::driver::result as cu;
use cudarc::driver::sys;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nvrtc::sys as nvrtc;
use quant_gpu::{Fence, GpuError, HostBuffer, Lanes, LaunchPlan, Queue, RawFence, RawHostBuffer};

/// A driver error, as the text the driver gives for it.
#[derive(Debug)]
pub(crate) struct FfiError {
    /// Whether the driver said "out of memory".
    pub out_of_memory: bool,
    /// The driver's message.
    pub message: String,
}

impl From<cu::DriverError> for FfiError {
    fn from(e: cu::DriverError) -> Self {
        FfiError {
            out_of_memory: e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            message: format!("{e}"),
        }
    }
}

fn err(message: impl Into<String>) -> FfiError {
    FfiError {
        out_of_memory: false,
        message: message.into(),
    }
}

type Res<T> = Result<T, FfiError>;

/// Whether `libcuda` can be loaded. cudarc panics on first use when it cannot, so everything
/// checks this first.
pub(crate) fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// Whether `libnvrtc` can be loaded.
pub(crate) fn nvrtc_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library.
    *PRESENT.get_or_init(|| unsafe { nvrtc::is_culib_present() })
}

/// Runs `f` with the driver loaded and initialised; a missing library or a panic inside cudarc
/// becomes an error.
fn with_driver<T>(f: impl FnOnce() -> Res<T>) -> Res<T> {
    if !driver_present() {
        return Err(err("the CUDA driver library (libcuda) is not installed"));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cu::init()?;
        f()
    }))
    .unwrap_or_else(|_| Err(err("the CUDA driver library could not be used")))
}

/// Number of CUDA devices.
pub(crate) fn device_count() -> Res<usize> {
    with_driver(|| Ok(cu::device::get_count()?.max(0) as usize))
}

/// One device: its primary context, the stream all work is queued on ([`Queue::Compute`]) and a
/// second stream for pipelined host-to-device copies ([`Queue::Copy`]).
pub(crate) struct Device {
    ctx: Arc<CudaContext>,
    stream: sys::CUstream,
    /// The caller's stream, when the device was opened on one ([`Device::on_stream`]): `stream`
    /// is its handle, kept alive by this and never destroyed here.
    engine_stream: Option<Arc<CudaStream>>,
    copy_stream: sys::CUstream,
    /// The streams of [`Queue::Lane`]s, created on first use.
    lanes: Lanes<sys::CUstream>,
    pool: Arc<EventPool>,
}

/// Synchronisation events (no timing) kept for reuse: the pipeline records several per batch,
/// and creating and destroying each costs more than recording it.
pub(crate) struct EventPool {
    free: parking_lot::Mutex<Vec<sys::CUevent>>,
    ctx: Arc<CudaContext>,
}

// SAFETY: event handles may be used from any thread; the list is behind a mutex.
unsafe impl Send for EventPool {}
// SAFETY: as above.
unsafe impl Sync for EventPool {}

impl Drop for EventPool {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            for e in self.free.get_mut().drain(..) {
                // SAFETY: each pooled event was created by `Device::event`, is not in use (its
                // `Event` was dropped), and is destroyed once.
                unsafe {
                    let _ = cu::event::destroy(e);
                }
            }
        }
    }
}

// SAFETY: the stream handle is only used through the driver, which is thread-safe; the context
// is bound to the calling thread before each call.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

impl Drop for Device {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: the copy stream was created by `with_context`, the lanes by `stream_of`,
            // and the compute stream too unless it is the caller's (which its `Arc<CudaStream>`
            // destroys); each is destroyed once.
            unsafe {
                let _ = cu::stream::synchronize(self.copy_stream);
                let _ = cu::stream::synchronize(self.stream);
                let _ = cu::stream::destroy(self.copy_stream);
                if self.engine_stream.is_none() {
                    let _ = cu::stream::destroy(self.stream);
                }
                for lane in self.lanes.take_all() {
                    let _ = cu::stream::synchronize(lane);
                    let _ = cu::stream::destroy(lane);
                }
            }
        }
    }
}

/// Static facts about a device.
pub(crate) struct DeviceFacts {
    pub name: String,
    pub major: i32,
    pub minor: i32,
    pub total_memory: u64,
    pub warp_size: u32,
    pub multiprocessors: u32,
    pub max_threads_per_block: u32,
    pub max_grid_x: u32,
}

impl Device {
    /// Opens device `ordinal` (retains its primary context) and creates its streams.
    pub fn open(ordinal: usize) -> Res<Self> {
        with_driver(|| {
            let count = cu::device::get_count()?.max(0) as usize;
            if ordinal >= count {
                return Err(err(format!(
                    "the driver reports {count} device(s), no ordinal {ordinal}"
                )));
            }
            Self::with_context(CudaContext::new(ordinal)?, None)
        })
    }

    /// Opens the device of `ctx`, the caller's context, with streams of its own.
    pub fn on_context(ctx: Arc<CudaContext>) -> Res<Self> {
        with_driver(|| Self::with_context(ctx, None))
    }

    /// Opens the device of the caller's `stream`, queueing all compute work on that stream
    /// (copies of the pipeline go on a stream of their own, ordered before the kernels that
    /// read them by events).
    pub fn on_stream(stream: Arc<CudaStream>) -> Res<Self> {
        with_driver(|| Self::with_context(stream.context().clone(), Some(stream)))
    }

    fn with_context(ctx: Arc<CudaContext>, engine: Option<Arc<CudaStream>>) -> Res<Self> {
        ctx.bind_to_thread()?;
        let copy_stream = cu::stream::create(cu::stream::StreamKind::NonBlocking)?;
        let stream = match &engine {
            Some(s) => s.cu_stream(),
            None => match cu::stream::create(cu::stream::StreamKind::NonBlocking) {
                Ok(s) => s,
                Err(e) => {
                    // SAFETY: created just above, destroyed once.
                    unsafe {
                        let _ = cu::stream::destroy(copy_stream);
                    }
                    return Err(e.into());
                }
            },
        };
        let pool = Arc::new(EventPool {
            free: parking_lot::Mutex::new(Vec::new()),
            ctx: ctx.clone(),
        });
        Ok(Device {
            ctx,
            stream,
            engine_stream: engine,
            copy_stream,
            lanes: Lanes::default(),
            pool,
        })
    }

    /// The context (shared with the caller's cudarc code, and with the CUDA runtime's primary
    /// context of the device when opened by ordinal).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The raw handle of the compute stream.
    pub fn compute_stream(&self) -> sys::CUstream {
        self.stream
    }

    /// The caller's stream, if the device was opened on one.
    pub fn engine_stream(&self) -> Option<&Arc<CudaStream>> {
        self.engine_stream.as_ref()
    }

    /// Checks that `[ptr, ptr + len)` lies inside one allocation of this device, and wraps it
    /// without taking ownership.
    ///
    /// # Safety
    /// The memory must stay allocated while the returned value and work queued on it live.
    pub unsafe fn wrap(&self, ptr: u64, len: usize) -> Res<DevMem> {
        self.bind()?;
        let mut ordinal: i32 = -1;
        // SAFETY: writes one int; the driver validates the address itself.
        let r = unsafe {
            sys::cuPointerGetAttribute(
                &mut ordinal as *mut i32 as *mut c_void,
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                ptr,
            )
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(err(format!(
                "the driver does not know it as device memory ({})",
                cu::DriverError(r)
            )));
        }
        if ordinal < 0 || ordinal as usize != self.ctx.ordinal() {
            return Err(err(format!(
                "it is memory of device {ordinal}, not of device {}",
                self.ctx.ordinal()
            )));
        }
        let (mut base, mut size) = (0 as sys::CUdeviceptr, 0usize);
        // SAFETY: writes one address and one size.
        let r = unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(err(format!(
                "the driver cannot give the allocation holding it ({})",
                cu::DriverError(r)
            )));
        }
        let end = ptr.checked_add(len as u64);
        let alloc_end = base.saturating_add(size as u64);
        if end.map_or(true, |e| e > alloc_end) {
            return Err(err(format!(
                "the allocation holding it is {size} bytes at {base:#x}, which ends {} bytes \
                 after the address",
                alloc_end - ptr
            )));
        }
        Ok(DevMem {
            ptr,
            len,
            ctx: self.ctx.clone(),
            owned: false,
        })
    }

    /// Makes later work on `stream` (a raw handle of this context, or the sentinels 1 and 2 for
    /// the legacy and per-thread default streams, which the driver takes as handles too) wait
    /// for everything queued so far on both of this device's streams.
    ///
    /// # Safety
    /// `stream` must be a live stream of this context or a sentinel.
    pub unsafe fn make_stream_wait(&self, stream: usize) -> Res<()> {
        if stream == 0 {
            return Err(err(
                "stream 0 is ambiguous: use 1 for the legacy default stream",
            ));
        }
        let lanes = self.lanes.all().len();
        let queues = [Queue::Compute, Queue::Copy].into_iter();
        let queues = queues.chain((0..lanes).map(|l| Queue::Lane(l as u16)));
        let events = queues
            .map(|q| self.record_on(q))
            .collect::<Res<Vec<Event>>>()?;
        self.bind()?;
        let target = stream as sys::CUstream;
        for e in &events {
            // SAFETY: the events are alive; the caller vouches for the stream. The wait captures
            // the event's state now, so returning the events to the pool afterwards is safe.
            unsafe {
                cu::stream::wait_event(target, e.0, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT)?
            };
        }
        Ok(())
    }

    fn bind(&self) -> Res<()> {
        self.ctx.bind_to_thread()?;
        Ok(())
    }

    /// The stream of `queue`; a lane's is created on its first use (non-blocking, as the copy
    /// stream), in this context.
    fn stream_of(&self, queue: Queue) -> Res<sys::CUstream> {
        match queue {
            Queue::Compute => Ok(self.stream),
            Queue::Copy => Ok(self.copy_stream),
            Queue::Lane(lane) => self.lanes.get_or_create(lane, || {
                self.bind()?;
                Ok(cu::stream::create(cu::stream::StreamKind::NonBlocking)?)
            }),
        }
    }

    /// Whether `host` is page-locked memory of this context, which [`Device::upload_async`]
    /// copies from.
    pub fn owns_pinned(&self, host: &HostBuffer) -> bool {
        host.raw()
            .as_any()
            .downcast_ref::<Pinned>()
            .is_some_and(|p| p.ctx.cu_ctx() == self.ctx.cu_ctx())
    }

    /// `bytes` bytes of page-locked host memory, zeroed.
    pub fn pinned(&self, bytes: usize) -> Res<Pinned> {
        self.bind()?;
        self.alloc_pinned(bytes)
    }

    /// Queues a copy of `src[range]` (page-locked memory of this context) to `dst[offset..]` on
    /// `queue`, and hands `src` the fence after it, so that `src` is neither written nor freed
    /// before the copy has read it.
    pub fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: std::ops::Range<usize>,
        dst: &mut DevMem,
        offset: usize,
    ) -> Res<()> {
        self.check_mem(dst)?;
        let pinned = src
            .raw()
            .as_any()
            .downcast_ref::<Pinned>()
            .ok_or_else(|| err("asynchronous upload from memory that is not page-locked"))?;
        self.check_mem_ctx(&pinned.ctx)?;
        if range.start > range.end || range.end > pinned.len {
            return Err(err("upload source range lies outside the host buffer"));
        }
        let len = range.end - range.start;
        if offset.checked_add(len).map_or(true, |end| end > dst.len) {
            return Err(err("upload past the end of the buffer"));
        }
        self.bind()?;
        if len == 0 {
            return Ok(());
        }
        let stream = self.stream_of(queue)?;
        let event = self.event(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)?;
        // SAFETY: the device range lies inside the allocation (checked). The pinned source stays
        // alive and unwritten until the event recorded after the copy completes: `HostBuffer`
        // holds that event and waits for it before handing out its bytes mutably or freeing them.
        unsafe {
            cu::memcpy_htod_async(dst.ptr + offset as u64, &pinned.as_slice()[range], stream)?;
            cu::event::record(event.0, stream)?;
        }
        src.set_pending(Fence::new(queue, Box::new(event)));
        Ok(())
    }

    /// An event after the work queued on `queue` so far.
    pub fn record_on(&self, queue: Queue) -> Res<Event> {
        let event = self.event(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)?;
        let stream = self.stream_of(queue)?;
        // SAFETY: both handles are alive.
        unsafe { cu::event::record(event.0, stream)? };
        Ok(event)
    }

    /// Makes later work on `queue` wait for `event`.
    pub fn wait_on(&self, queue: Queue, event: &Event) -> Res<()> {
        self.check_mem_ctx(&event.1)?;
        self.bind()?;
        let stream = self.stream_of(queue)?;
        // SAFETY: both handles are alive; the wait is recorded by the driver.
        unsafe {
            cu::stream::wait_event(
                stream,
                event.0,
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )?
        };
        Ok(())
    }

    /// Name, compute capability, memory, warp size, multiprocessor count and launch limits.
    pub fn facts(&self) -> Res<DeviceFacts> {
        use sys::CUdevice_attribute as A;
        let attr = |a| -> Res<i32> { Ok(self.ctx.attribute(a)?) };
        let count = |a| -> Res<u32> { Ok(attr(a)?.max(0) as u32) };
        Ok(DeviceFacts {
            name: self.ctx.name()?,
            major: attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            minor: attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            total_memory: self.ctx.total_mem()? as u64,
            warp_size: count(A::CU_DEVICE_ATTRIBUTE_WARP_SIZE)?,
            multiprocessors: count(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            max_threads_per_block: count(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
            max_grid_x: count(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
        })
    }

    /// Free and total device memory.
    pub fn mem_info(&self) -> Res<(u64, u64)> {
        let (free, total) = self.ctx.mem_get_info()?;
        Ok((free as u64, total as u64))
    }

    /// Allocates `bytes` bytes of device memory (at least one byte is reserved, so that every
    /// buffer has a valid address).
    pub fn alloc(&self, bytes: usize) -> Res<DevMem> {
        self.bind()?;
        // SAFETY: plain allocation; the pointer is owned by the returned DevMem.
        let ptr = unsafe { cu::malloc_sync(bytes.max(1))? };
        Ok(DevMem {
            ptr,
            len: bytes,
            ctx: self.ctx.clone(),
            owned: true,
        })
    }

    fn check_mem(&self, mem: &DevMem) -> Res<()> {
        if mem.ctx.cu_ctx() != self.ctx.cu_ctx() {
            return Err(err("buffer belongs to another context"));
        }
        Ok(())
    }

    /// Queues a memset of all of `mem`.
    pub fn memset(&self, mem: &mut DevMem, value: u8) -> Res<()> {
        self.check_mem(mem)?;
        self.bind()?;
        if mem.len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside the allocation.
        unsafe { cu::memset_d8_async(mem.ptr, value, mem.len, self.stream)? };
        Ok(())
    }

    /// Queues a copy of the first `bytes` bytes of `src` into `dst` on `queue`'s stream.
    pub fn copy_d2d(&self, queue: Queue, src: &DevMem, dst: &mut DevMem, bytes: usize) -> Res<()> {
        self.check_mem(src)?;
        self.check_mem(dst)?;
        if bytes > src.len || bytes > dst.len {
            return Err(err("device copy larger than a buffer"));
        }
        self.bind()?;
        if bytes == 0 {
            return Ok(());
        }
        let stream = self.stream_of(queue)?;
        // SAFETY: both ranges lie inside their allocations.
        unsafe { cu::memcpy_dtod_async(dst.ptr, src.ptr, bytes, stream)? };
        Ok(())
    }

    /// Copies `src` to `dst[offset..]` and waits for it (pageable source).
    pub fn upload_direct(&self, src: &[u8], dst: &mut DevMem, offset: usize) -> Res<()> {
        self.check_mem(dst)?;
        if offset
            .checked_add(src.len())
            .map_or(true, |end| end > dst.len)
        {
            return Err(err("upload past the end of the buffer"));
        }
        self.bind()?;
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: the range lies inside the allocation; we wait before `src` can be released.
        unsafe {
            cu::memcpy_htod_async(dst.ptr + offset as u64, src, self.stream)?;
            cu::stream::synchronize(self.stream)?;
        }
        Ok(())
    }

    /// Copies `src[offset..offset + dst.len()]` to `dst` and waits for it (pageable target).
    pub fn download_direct(&self, src: &DevMem, offset: usize, dst: &mut [u8]) -> Res<()> {
        self.check_mem(src)?;
        if offset
            .checked_add(dst.len())
            .map_or(true, |end| end > src.len)
        {
            return Err(err("download past the end of the buffer"));
        }
        self.bind()?;
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: the range lies inside the allocation; we wait before `dst` is used again.
        unsafe {
            cu::memcpy_dtoh_async(dst, src.ptr + offset as u64, self.stream)?;
            cu::stream::synchronize(self.stream)?;
        }
        Ok(())
    }

    /// Uploads `src` to `dst[offset..]` through the two pinned buffers of `staging`, the host
    /// copy into one overlapping the DMA out of the other. Returns once everything has landed.
    pub fn upload_staged(
        &self,
        staging: &mut Staging,
        src: &[u8],
        dst: &mut DevMem,
        offset: usize,
    ) -> Res<()> {
        self.check_mem(dst)?;
        self.check_mem_ctx(&staging.ctx)?;
        if offset
            .checked_add(src.len())
            .map_or(true, |end| end > dst.len)
        {
            return Err(err("upload past the end of the buffer"));
        }
        self.bind()?;
        let chunk = staging.chunk;
        for (i, piece) in src.chunks(chunk).enumerate() {
            let b = i % 2;
            // SAFETY: waits until the DMA that last read this pinned buffer has finished, so
            // the host may overwrite it; the event was recorded on our stream (or never).
            unsafe { cu::event::synchronize(staging.events[b].0)? };
            let host = staging.bufs[b].as_mut_slice();
            host[..piece.len()].copy_from_slice(piece);
            let at = dst.ptr + (offset + i * chunk) as u64;
            // SAFETY: pinned source stays alive and untouched until the event below completes;
            // the device range lies inside the allocation.
            unsafe {
                cu::memcpy_htod_async(at, &staging.bufs[b].as_slice()[..piece.len()], self.stream)?;
                cu::event::record(staging.events[b].0, self.stream)?;
            }
        }
        // SAFETY: waits for every queued copy.
        unsafe { cu::stream::synchronize(self.stream)? };
        Ok(())
    }

    /// Downloads `src[offset..offset + dst.len()]` through the pinned buffers of `staging`: the
    /// DMA into one buffer overlaps the host copy out of the other.
    pub fn download_staged(
        &self,
        staging: &mut Staging,
        src: &DevMem,
        offset: usize,
        dst: &mut [u8],
    ) -> Res<()> {
        self.check_mem(src)?;
        self.check_mem_ctx(&staging.ctx)?;
        if offset
            .checked_add(dst.len())
            .map_or(true, |end| end > src.len)
        {
            return Err(err("download past the end of the buffer"));
        }
        self.bind()?;
        let chunk = staging.chunk;
        let n = dst.len().div_ceil(chunk);
        let issue = |staging: &mut Staging, i: usize, len: usize| -> Res<()> {
            let b = i % 2;
            let from = src.ptr + (offset + i * chunk) as u64;
            // SAFETY: the pinned buffer is not read by the host until the event below has
            // completed; the device range lies inside the allocation.
            unsafe {
                cu::memcpy_dtoh_async(
                    &mut staging.bufs[b].as_mut_slice()[..len],
                    from,
                    self.stream,
                )?;
                cu::event::record(staging.events[b].0, self.stream)?;
            }
            Ok(())
        };
        let total = dst.len();
        let len_of = |i: usize| chunk.min(total - i * chunk);
        if n > 0 {
            issue(staging, 0, len_of(0))?;
        }
        for i in 0..n {
            if i + 1 < n {
                issue(staging, i + 1, len_of(i + 1))?;
            }
            let b = i % 2;
            // SAFETY: waits until the DMA into this buffer has finished.
            unsafe { cu::event::synchronize(staging.events[b].0)? };
            let len = len_of(i);
            dst[i * chunk..i * chunk + len].copy_from_slice(&staging.bufs[b].as_slice()[..len]);
        }
        Ok(())
    }

    fn check_mem_ctx(&self, ctx: &Arc<CudaContext>) -> Res<()> {
        if ctx.cu_ctx() != self.ctx.cu_ctx() {
            return Err(err("staging memory belongs to another context"));
        }
        Ok(())
    }

    /// Two pinned host buffers of `chunk` bytes each, with their events.
    pub fn staging(&self, chunk: usize) -> Res<Staging> {
        self.bind()?;
        let bufs = [self.alloc_pinned(chunk)?, self.alloc_pinned(chunk)?];
        let events = [
            self.event(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)?,
            self.event(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)?,
        ];
        Ok(Staging {
            bufs,
            events,
            chunk,
            ctx: self.ctx.clone(),
        })
    }

    /// Page-locked memory: an anonymous mapping (huge pages where the kernel gives them),
    /// faulted in on the calling thread and then registered with the driver; or, where that
    /// fails, `cuMemHostAlloc`. Both are zeroed.
    ///
    /// Pinning is mostly the cost of faulting fresh pages in (on a virtual machine, the host's
    /// too). `cuMemHostAlloc` does it under the driver's lock, so slots allocated by several
    /// reader threads at once were pinned one after another, and every driver call of the
    /// issuing thread waited meanwhile; faulting the pages in here first leaves only the
    /// short registration under the lock.
    fn alloc_pinned(&self, bytes: usize) -> Res<Pinned> {
        let len = bytes.max(1);
        if let Ok(p) = self.alloc_registered(len, bytes) {
            return Ok(p);
        }
        // SAFETY: plain allocation, owned by the returned value; zeroed before any use so that
        // it can be viewed as a byte slice.
        unsafe {
            let ptr = cu::malloc_host(len, sys::CU_MEMHOSTALLOC_PORTABLE)? as *mut u8;
            std::ptr::write_bytes(ptr, 0, len);
            Ok(Pinned {
                ptr,
                len: bytes,
                backing: Backing::Driver,
                ctx: self.ctx.clone(),
            })
        }
    }

    /// `len` bytes (at least 1) registered, of which `bytes` are handed out.
    fn alloc_registered(&self, len: usize, bytes: usize) -> Res<Pinned> {
        const HUGE: usize = 2 << 20;
        const PAGE: usize = 4096;
        let map_err = |e: std::io::Error| err(format!("mapping {len} bytes: {e}"));
        // One huge page more than asked for, so that a 2 MiB-aligned run of `len` bytes fits.
        let mut map = memmap2::MmapOptions::new()
            .len(len.checked_add(HUGE).ok_or_else(|| err("size overflows"))?)
            .map_anon()
            .map_err(map_err)?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage); // a hint: 4 KiB pages do too
        let base = map.as_mut_ptr();
        let skip = base.align_offset(HUGE).min(HUGE);
        // SAFETY: `skip + len <= len + HUGE`, inside the mapping, which the returned value
        // owns. The mapping is zeroed by the kernel; writing a zero into each page faults it in
        // without changing it.
        unsafe {
            let ptr = base.add(skip);
            for off in (0..len).step_by(PAGE) {
                ptr.add(off).write_volatile(0);
            }
            let r = sys::cuMemHostRegister_v2(
                ptr as *mut c_void,
                len,
                sys::CU_MEMHOSTREGISTER_PORTABLE,
            );
            if r != sys::CUresult::CUDA_SUCCESS {
                return Err(cu::DriverError(r).into());
            }
            Ok(Pinned {
                ptr,
                len: bytes,
                backing: Backing::Registered(map),
                ctx: self.ctx.clone(),
            })
        }
    }

    fn event(&self, flags: sys::CUevent_flags) -> Res<Event> {
        self.bind()?;
        if flags == sys::CUevent_flags::CU_EVENT_DISABLE_TIMING {
            if let Some(e) = self.pool.free.lock().pop() {
                return Ok(Event(e, self.ctx.clone(), Some(self.pool.clone())));
            }
            return Ok(Event(
                cu::event::create(flags)?,
                self.ctx.clone(),
                Some(self.pool.clone()),
            ));
        }
        Ok(Event(cu::event::create(flags)?, self.ctx.clone(), None))
    }

    /// An event that can time work on the stream.
    pub fn timing_event(&self) -> Res<Event> {
        self.event(sys::CUevent_flags::CU_EVENT_DEFAULT)
    }

    /// Queues `event` on the stream.
    pub fn record(&self, event: &Event) -> Res<()> {
        self.bind()?;
        // SAFETY: both handles are alive.
        unsafe { cu::event::record(event.0, self.stream)? };
        Ok(())
    }

    /// Waits for all queued work, on every stream (compute, copy and the lanes).
    pub fn synchronize(&self) -> Res<()> {
        self.bind()?;
        let lanes = self.lanes.all();
        // SAFETY: every stream is alive while `self` is.
        unsafe {
            cu::stream::synchronize(self.copy_stream)?;
            for lane in lanes {
                cu::stream::synchronize(lane)?;
            }
            cu::stream::synchronize(self.stream)?;
        }
        Ok(())
    }

    /// Loads a cubin (ELF) image.
    pub fn load_module(&self, image: &[u8]) -> Res<Arc<Module>> {
        if !image.starts_with(b"\x7fELF") {
            return Err(err("not a cubin: no ELF header"));
        }
        self.bind()?;
        // The driver reads an image of unknown length; a NUL after it keeps a truncated image
        // from being read past its end.
        let mut owned = Vec::with_capacity(image.len() + 1);
        owned.extend_from_slice(image);
        owned.push(0);
        // SAFETY: the image is a complete, NUL-terminated buffer that outlives the call.
        let module = unsafe { cu::module::load_data(owned.as_ptr() as *const c_void)? };
        Ok(Arc::new(Module(module, self.ctx.clone())))
    }

    /// Queues one launch of a dequantization kernel, whose signature is
    /// `(const uint8_t* src, OUT* dst, uint64_t n_blocks)`, as `plan` says: `plan.groups()`
    /// groups of `plan.threads_per_group()` threads reading `src[plan.src_range()]` and writing
    /// `dst[plan.dst_range()]`. Refuses a plan whose ranges do not lie inside these buffers or
    /// do not match its block count ([`LaunchPlan::fits`]), so that no caller's mistake reaches
    /// the device as an out-of-bounds pointer.
    pub fn launch(
        &self,
        queue: Queue,
        function: &Function,
        plan: &LaunchPlan,
        src: &DevMem,
        dst: &mut DevMem,
    ) -> Res<()> {
        let stream = self.stream_of(queue)?;
        // SAFETY: the queue's stream is alive while `self` is, and the buffers are borrowed
        // from their owners, which free them only after the stream has finished with them.
        unsafe { self.launch_on(function, plan, src, dst, stream) }
    }

    /// [`Device::launch`] on `stream`, a stream of this context (or a sentinel the driver takes
    /// as a stream: null, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`), not waited for.
    ///
    /// # Safety
    /// `stream` must be a live stream of this context, and `src` and `dst` must stay allocated
    /// until the kernel has run.
    pub unsafe fn launch_on(
        &self,
        function: &Function,
        plan: &LaunchPlan,
        src: &DevMem,
        dst: &mut DevMem,
        stream: sys::CUstream,
    ) -> Res<()> {
        self.check_mem(src)?;
        self.check_mem(dst)?;
        plan.check_fits(src.len, dst.len).map_err(err)?;
        if plan.is_empty() {
            return Ok(());
        }
        if function.1 .1.cu_ctx() != self.ctx.cu_ctx() {
            return Err(err("kernel belongs to another context"));
        }
        self.bind()?;
        // In bounds (checked above), so these are addresses inside the allocations.
        let mut src_ptr = src.ptr + plan.src_range().start as u64;
        let mut dst_ptr = dst.ptr + plan.dst_range().start as u64;
        let mut n = plan.n_blocks();
        let mut params = [
            &mut src_ptr as *mut u64 as *mut c_void,
            &mut dst_ptr as *mut u64 as *mut c_void,
            &mut n as *mut u64 as *mut c_void,
        ];
        // SAFETY: the function takes (pointer, pointer, u64), the parameters live across the
        // call (the driver copies them), and the pointers point into device allocations of this
        // context with `n_blocks` blocks of input and their values of output in bounds (checked
        // above with `LaunchPlan::fits`); the caller vouches for the stream.
        unsafe {
            cu::launch_kernel(
                function.0,
                (plan.groups(), 1, 1),
                (plan.threads_per_group(), 1, 1),
                0,
                stream,
                &mut params,
            )?
        };
        Ok(())
    }
}

/// Device memory; freed on drop when owned.
pub(crate) struct DevMem {
    ptr: sys::CUdeviceptr,
    len: usize,
    ctx: Arc<CudaContext>,
    /// Whether drop frees it: `false` for the caller's memory ([`Device::wrap`]) and once given
    /// up ([`DevMem::release`]).
    owned: bool,
}

impl DevMem {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Device address of the first byte.
    pub fn addr(&self) -> u64 {
        self.ptr
    }

    /// Whether drop frees the memory.
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Gives the allocation up: drop no longer frees it.
    pub fn release(&mut self) {
        self.owned = false;
    }
}

impl std::fmt::Debug for DevMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevMem({:#x}, {} bytes)", self.ptr, self.len)
    }
}

impl Drop for DevMem {
    fn drop(&mut self) {
        if self.owned && self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by `Device::alloc`, freed once; cuMemFree waits for work that
            // may still use it.
            unsafe {
                let _ = cu::free_sync(self.ptr);
            }
        }
    }
}

/// Page-locked host memory; freed on drop.
pub(crate) struct Pinned {
    ptr: *mut u8,
    len: usize,
    backing: Backing,
    ctx: Arc<CudaContext>,
}

/// Where a [`Pinned`]'s memory comes from.
enum Backing {
    /// `cuMemHostAlloc`.
    Driver,
    /// An anonymous mapping registered with `cuMemHostRegister`; `ptr` lies inside it.
    Registered(#[allow(dead_code)] memmap2::MmapMut),
}

impl Pinned {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes owned by self; the device writes them only inside
        // `download_staged`, which holds `&mut Staging` and waits before reading. (Asynchronous
        // uploads only read them.)
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, exclusively borrowed. Staging waits for its events before writing;
        // a `HostBuffer` waits for its pending fence before calling this.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pinned({} bytes)", self.len)
    }
}

// SAFETY: an owned allocation; the pointer is only dereferenced through `&self`/`&mut self`.
unsafe impl Send for Pinned {}

impl RawHostBuffer for Pinned {
    fn as_slice(&self) -> &[u8] {
        Pinned::as_slice(self)
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        Pinned::as_mut_slice(self)
    }
    fn is_pinned(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated or registered by `alloc_pinned`, released once, after the last
            // copy (Staging is only dropped by its owner, and every staged copy waits for its
            // events; a HostBuffer waits for its pending fence before dropping this). The
            // mapping of a registered buffer is unmapped after this, when `backing` drops.
            unsafe {
                match self.backing {
                    Backing::Driver => {
                        let _ = cu::free_host(self.ptr as *mut c_void);
                    }
                    Backing::Registered(_) => {
                        let _ = sys::cuMemHostUnregister(self.ptr as *mut c_void);
                    }
                }
            }
        }
    }
}

/// Two pinned buffers and the events that say when the device is done with each.
pub(crate) struct Staging {
    bufs: [Pinned; 2],
    events: [Event; 2],
    chunk: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: the raw pointers are owned allocations, accessed only through `&mut Staging`.
unsafe impl Send for Staging {}

/// A CUDA event; destroyed on drop, or returned to its pool (synchronisation events).
pub(crate) struct Event(sys::CUevent, Arc<CudaContext>, Option<Arc<EventPool>>);

// SAFETY: event handles may be used from any thread.
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

impl Event {
    /// Milliseconds between `self` and a later `end`, waiting for `end` first.
    pub fn elapsed_ms(&self, end: &Event) -> Res<f32> {
        self.1.bind_to_thread()?;
        // SAFETY: both events are alive and were recorded.
        unsafe {
            cu::event::synchronize(end.0)?;
            Ok(cu::event::elapsed(self.0, end.0)?)
        }
    }
}

impl RawFence for Event {
    fn wait(&self) -> Result<(), GpuError> {
        let run = || -> Res<()> {
            self.1.bind_to_thread()?;
            // SAFETY: the event is alive.
            unsafe { cu::event::synchronize(self.0)? };
            Ok(())
        };
        run().map_err(|e| GpuError::Driver {
            op: "cuEventSynchronize".into(),
            reason: e.message,
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Event({:p})", self.0)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Some(pool) = &self.2 {
            // Recording it again later is allowed whatever waits on it now: a wait captures the
            // event's state when it is queued.
            pool.free.lock().push(self.0);
            return;
        }
        if self.1.bind_to_thread().is_ok() {
            // SAFETY: created by `Device::event`, destroyed once.
            unsafe {
                let _ = cu::event::destroy(self.0);
            }
        }
    }
}

/// Loads `f`'s code now. Under the driver's lazy loading (the default since CUDA 12.2), a
/// function looked up in a module is loaded at its first launch: on a pipelined load that is a
/// reader thread, with its first batch waiting. Loading it where the module is prepared (beside
/// the first reads) keeps that off the readers, and a first call before a CUDA graph capture
/// keeps it out of the capture. Drivers before 12.4 have no `cuFuncLoad`; they keep the lazy
/// behaviour.
fn load_function(f: sys::CUfunction) -> Res<()> {
    static HAS_FUNC_LOAD: OnceLock<bool> = OnceLock::new();
    let has = *HAS_FUNC_LOAD.get_or_init(|| {
        let mut version = 0;
        // SAFETY: writes one int; the driver is initialised (a module is loaded).
        let ok = unsafe { sys::cuDriverGetVersion(&mut version) };
        ok == sys::CUresult::CUDA_SUCCESS && version >= 12040
    });
    if has {
        // SAFETY: `f` was just returned by the driver for a live module.
        unsafe { sys::cuFuncLoad(f) }.result()?;
    }
    Ok(())
}

/// A loaded module; unloaded on drop (after its functions, which hold it).
pub(crate) struct Module(sys::CUmodule, Arc<CudaContext>);

// SAFETY: module handles may be used from any thread.
unsafe impl Send for Module {}
// SAFETY: as above.
unsafe impl Sync for Module {}

impl Module {
    /// Looks up an `extern "C"` entry point.
    pub fn function(self: &Arc<Self>, name: &str) -> Res<Function> {
        let cname = CString::new(name).map_err(|_| err("entry name contains NUL"))?;
        self.1.bind_to_thread()?;
        // SAFETY: the module is alive and stays alive as long as the returned function.
        let f = unsafe { cu::module::get_function(self.0, cname)? };
        load_function(f)?;
        Ok(Function(f, self.clone()))
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if self.1.bind_to_thread().is_ok() {
            // SAFETY: loaded by `load_module`, unloaded once, when no function refers to it.
            unsafe {
                let _ = cu::module::unload(self.0);
            }
        }
    }
}

/// A kernel entry point; keeps its module loaded.
pub(crate) struct Function(sys::CUfunction, Arc<Module>);

impl Function {
    /// Groups of `threads` threads of this kernel that one multiprocessor runs at once, given
    /// its registers and static shared memory (`cuOccupancyMaxActiveBlocksPerMultiprocessor`).
    pub fn groups_per_multiprocessor(&self, threads: u32) -> Res<u32> {
        let Function(function, module) = self;
        module.1.bind_to_thread()?;
        let threads = i32::try_from(threads).map_err(|_| err("threads per group over i32"))?;
        // SAFETY: the function is alive while its module (held by `self`) is.
        let n =
            unsafe { cu::occupancy::max_active_block_per_multiprocessor(*function, threads, 0)? };
        Ok(u32::try_from(n).unwrap_or(0))
    }
}

// SAFETY: function handles may be used from any thread.
unsafe impl Send for Function {}
// SAFETY: as above.
unsafe impl Sync for Function {}

/// NVRTC's version, `(major, minor)`.
pub(crate) fn nvrtc_version() -> Res<(i32, i32)> {
    if !nvrtc_present() {
        return Err(err("the NVRTC library (libnvrtc) is not installed"));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two out-parameters.
    let r = unsafe { nvrtc::nvrtcVersion(&mut major, &mut minor) };
    r.result()
        .map_err(|e| err(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// Compiles `source` (named `name`) with NVRTC, with `header` available to `#include` as
/// `header_name`, and returns the cubin. On failure the message holds NVRTC's log.
pub(crate) fn nvrtc_compile(
    source: &str,
    name: &str,
    header: &str,
    header_name: &str,
    options: &[String],
) -> Result<Vec<u8>, String> {
    if !nvrtc_present() {
        return Err("the NVRTC library (libnvrtc) is not installed".into());
    }
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let c_src = cstr(source)?;
    let c_name = cstr(name)?;
    let c_header = cstr(header)?;
    let c_header_name = cstr(header_name)?;
    let c_opts = options
        .iter()
        .map(|o| cstr(o))
        .collect::<Result<Vec<_>, _>>()?;
    let opt_ptrs: Vec<*const std::ffi::c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
    let headers = [c_header.as_ptr()];
    let include_names = [c_header_name.as_ptr()];

    std::panic::catch_unwind(|| {
        let mut prog: nvrtc::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live NUL-terminated string or array of them with
        // the stated lengths; the program is destroyed below on every path.
        unsafe {
            nvrtc::nvrtcCreateProgram(
                &mut prog,
                c_src.as_ptr(),
                c_name.as_ptr(),
                1,
                headers.as_ptr(),
                include_names.as_ptr(),
            )
            .result()
            .map_err(|e| format!("nvrtcCreateProgram: {e:?}"))?;
            let compiled =
                nvrtc::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr());
            let result = if compiled.result().is_ok() {
                let mut size = 0usize;
                match nvrtc::nvrtcGetCUBINSize(prog, &mut size).result() {
                    Ok(()) if size > 0 => {
                        let mut cubin = vec![0u8; size];
                        nvrtc::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut std::ffi::c_char)
                            .result()
                            .map(|()| cubin)
                            .map_err(|e| format!("nvrtcGetCUBIN: {e:?}"))
                    }
                    Ok(()) => Err("NVRTC produced no cubin (was a real sm_XX arch given?)".into()),
                    Err(e) => Err(format!("nvrtcGetCUBINSize: {e:?}")),
                }
            } else {
                let mut log_size = 0usize;
                let mut log = String::new();
                if nvrtc::nvrtcGetProgramLogSize(prog, &mut log_size)
                    .result()
                    .is_ok()
                {
                    let mut buf = vec![0u8; log_size.max(1)];
                    if nvrtc::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut std::ffi::c_char)
                        .result()
                        .is_ok()
                    {
                        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                        log = String::from_utf8_lossy(&buf[..end]).into_owned();
                    }
                }
                Err(format!("{compiled:?}\n{log}"))
            };
            let _ = nvrtc::nvrtcDestroyProgram(&mut prog);
            result
        }
    })
    .unwrap_or_else(|_| Err("the NVRTC library could not be used".into()))
}
