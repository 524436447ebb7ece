//! Every `unsafe` call into the HIP runtime, and nothing else.
//!
//! The layering follows cudarc: `hip-runtime-sys` holds the raw declarations, this module wraps
//! each call it needs in a thin checked function returning `Result<_, HipError>`, and owns the
//! runtime's handles in types that free them on drop. The backend above is safe code.
//!
//! HIP keeps the current device per host thread, so every wrapper that acts on a device takes
//! its ordinal and selects it first.

use std::any::Any;
use std::ffi::{c_void, CStr, CString};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr;
use std::sync::Arc;

use hip_runtime_sys as sys;
use parking_lot::Mutex;
use quant_gpu::{Fence, GpuError, HostBuffer, LaunchPlan, Queue, RawFence, RawHostBuffer};
use sys::hipError_t;

/// A failed HIP runtime call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {name} ({code}): {message}")]
pub(crate) struct HipError {
    /// The runtime function (and what it was asked to do).
    pub op: String,
    /// The `hipError_t` value.
    pub code: u32,
    /// `hipGetErrorName`.
    pub name: String,
    /// `hipGetErrorString`.
    pub message: String,
}

impl HipError {
    /// Whether the runtime ran out of device memory.
    pub fn is_out_of_memory(&self) -> bool {
        self.code == hipError_t::hipErrorOutOfMemory as u32
    }
}

fn cstr_or(p: *const std::ffi::c_char, fallback: &str) -> String {
    if p.is_null() {
        return fallback.to_string();
    }
    // SAFETY: the runtime returns pointers to static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn check(rc: hipError_t, op: impl FnOnce() -> String) -> Result<(), HipError> {
    if rc == hipError_t::hipSuccess {
        return Ok(());
    }
    // SAFETY: both take any error value and return a static string (or null).
    let (name, message) = unsafe { (sys::hipGetErrorName(rc), sys::hipGetErrorString(rc)) };
    Err(HipError {
        op: op(),
        code: rc as u32,
        name: cstr_or(name, "hipError"),
        message: cstr_or(message, "unknown error"),
    })
}

/// A call refused before it reached the runtime (`hipErrorInvalidValue`).
fn invalid(op: impl Into<String>, message: impl Into<String>) -> HipError {
    HipError {
        op: op.into(),
        code: hipError_t::hipErrorInvalidValue as u32,
        name: "hipErrorInvalidValue".into(),
        message: message.into(),
    }
}

fn c_ordinal(ordinal: usize) -> Result<i32, HipError> {
    i32::try_from(ordinal).map_err(|_| HipError {
        op: format!("device ordinal {ordinal}"),
        code: hipError_t::hipErrorInvalidDevice as u32,
        name: "hipErrorInvalidDevice".into(),
        message: "ordinal out of range".into(),
    })
}

/// `hipGetDeviceCount`: fails with `hipErrorNoDevice` on a machine without an AMD GPU.
pub(crate) fn device_count() -> Result<usize, HipError> {
    let mut n: i32 = 0;
    // SAFETY: writes one int.
    check(unsafe { sys::hipGetDeviceCount(&mut n) }, || {
        "hipGetDeviceCount".into()
    })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `hipRuntimeGetVersion`.
pub(crate) fn runtime_version() -> Result<i32, HipError> {
    let mut v: i32 = 0;
    // SAFETY: writes one int.
    check(unsafe { sys::hipRuntimeGetVersion(&mut v) }, || {
        "hipRuntimeGetVersion".into()
    })?;
    Ok(v)
}

/// `hipSetDevice`: makes `ordinal` current on this host thread.
pub(crate) fn set_device(ordinal: usize) -> Result<(), HipError> {
    let o = c_ordinal(ordinal)?;
    // SAFETY: plain call.
    check(unsafe { sys::hipSetDevice(o) }, || {
        format!("hipSetDevice({ordinal})")
    })
}

/// The device properties the backend uses.
#[derive(Clone, Debug)]
pub(crate) struct Props {
    pub name: String,
    /// Full `gcnArchName`, e.g. `gfx90a:sramecc+:xnack-`.
    pub gcn_arch_name: String,
    pub total_global_mem: u64,
    pub warp_size: u32,
    pub multiprocessors: u32,
    pub max_threads_per_block: u32,
    pub max_grid_x: u32,
}

fn c_chars_to_string(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `hipGetDeviceProperties`.
pub(crate) fn device_props(ordinal: usize) -> Result<Props, HipError> {
    let o = c_ordinal(ordinal)?;
    // Room to spare after the struct, in case the runtime's is longer than the bindings'.
    #[repr(C)]
    struct Padded {
        prop: sys::hipDeviceProp_t,
        _spare: [u8; 4096],
    }
    let mut p = MaybeUninit::<Padded>::zeroed();
    // SAFETY: the runtime fills a hipDeviceProp_t at the pointer; the rest is zeroed spare room.
    check(
        unsafe { sys::hipGetDeviceProperties(ptr::addr_of_mut!((*p.as_mut_ptr()).prop), o) },
        || format!("hipGetDeviceProperties({ordinal})"),
    )?;
    // SAFETY: zero-initialised plain data, now filled in by the runtime.
    let p = unsafe { p.assume_init() }.prop;
    let pos = |v: i32| u32::try_from(v).unwrap_or(0);
    Ok(Props {
        name: c_chars_to_string(&p.name),
        gcn_arch_name: c_chars_to_string(&p.gcnArchName),
        total_global_mem: p.totalGlobalMem as u64,
        warp_size: pos(p.warpSize),
        multiprocessors: pos(p.multiProcessorCount),
        max_threads_per_block: pos(p.maxThreadsPerBlock),
        max_grid_x: pos(p.maxGridSize[0]),
    })
}

/// `hipMemGetInfo` on `ordinal`: (free, total).
pub(crate) fn mem_info(ordinal: usize) -> Result<(u64, u64), HipError> {
    set_device(ordinal)?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: writes two size_t.
    check(unsafe { sys::hipMemGetInfo(&mut free, &mut total) }, || {
        format!("hipMemGetInfo({ordinal})")
    })?;
    Ok((free as u64, total as u64))
}

/// `hipPointerAttribute_t` as ROCm 5.2 lays it out (checked against the header by a test) and
/// as the 5.4 bindings do, with `memoryType` read as a plain `u32`: the bindings' Rust enum
/// would be undefined behaviour for a value outside it, and ROCm 6 renumbered it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct PointerAttributes {
    memory_type: u32,
    device: i32,
    device_pointer: *mut c_void,
    host_pointer: *mut c_void,
    is_managed: i32,
    allocation_flags: u32,
}

/// What `hipPointerAttribute_t.memoryType` says an address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemoryKind {
    /// Device memory (`hipMalloc`).
    Device,
    /// Managed memory (`hipMallocManaged`), which the device can write.
    Managed,
    /// Host memory (`hipHostMalloc`, registered memory).
    Host,
    /// A HIP array (texture memory), not linear.
    Array,
    /// `hipMemoryTypeUnified` (unused by the runtime).
    Unified,
    /// Not known to the runtime (ROCm 6 only; ROCm 5 returns an error instead).
    Unregistered,
    /// A value this crate does not know.
    Other(u32),
}

impl MemoryKind {
    /// Decodes `memoryType` for the runtime `version` (`hipRuntimeGetVersion`): ROCm 5 numbers
    /// Host, Device, Array, Unified (and Managed, in 5.4's header) from 0; ROCm 6 took CUDA's
    /// numbers (Unregistered 0, Host 1, Device 2, Managed 3, Array 10, Unified 11).
    pub fn decode(raw: u32, version: i32) -> Self {
        use MemoryKind::*;
        if version >= 60_000_000 {
            match raw {
                0 => Unregistered,
                1 => Host,
                2 => Device,
                3 => Managed,
                10 => Array,
                11 => Unified,
                n => Other(n),
            }
        } else {
            match raw {
                0 => Host,
                1 => Device,
                2 => Array,
                3 => Unified,
                4 => Managed,
                n => Other(n),
            }
        }
    }
}

/// Whether memory the runtime describes as `kind` on `device` can be written by kernels of
/// device `ordinal`: device or managed memory of that very device, nothing else.
fn check_attributes(kind: MemoryKind, device: i32, ordinal: usize) -> Result<(), String> {
    match kind {
        MemoryKind::Device | MemoryKind::Managed => {}
        MemoryKind::Host => {
            return Err("it is host memory (hipHostMalloc or registered), not device memory".into())
        }
        MemoryKind::Unregistered => return Err("the HIP runtime does not know it as memory".into()),
        other => return Err(format!("it is {other:?} memory, not linear device memory")),
    }
    if usize::try_from(device).ok() != Some(ordinal) {
        return Err(format!(
            "it is memory of device {device}, not of device {ordinal}"
        ));
    }
    Ok(())
}

/// Whether `[ptr, ptr + len)` lies inside the allocation of `size` bytes at `base`.
fn check_within(ptr: u64, len: usize, base: u64, size: usize) -> Result<(), String> {
    let alloc_end = base.checked_add(size as u64);
    let end = ptr.checked_add(len as u64);
    match (alloc_end, end) {
        (Some(alloc_end), Some(end)) if ptr >= base && end <= alloc_end => Ok(()),
        _ => Err(format!(
            "the allocation holding it is {size} bytes at {base:#x}, which does not hold \
             {len} bytes from {ptr:#x}"
        )),
    }
}

/// Device memory: from `hipMalloc` and freed on drop, or the caller's ([`DeviceMem::wrap`]) and
/// never freed here.
#[derive(Debug)]
pub(crate) struct DeviceMem {
    ptr: *mut c_void,
    len: usize,
    /// Whether drop frees it (`false` once released to the caller, or for caller memory).
    owned: bool,
}

// SAFETY: a device address is usable from any host thread; the runtime is thread-safe.
unsafe impl Send for DeviceMem {}
// SAFETY: as above; &DeviceMem only hands out the address.
unsafe impl Sync for DeviceMem {}

impl DeviceMem {
    /// `hipMalloc(len)` on `ordinal`. At least one byte is allocated, so that an empty buffer
    /// has a valid address too (as [`quant_gpu::RawAllocation`] promises, and as on CUDA).
    pub fn alloc(ordinal: usize, len: usize) -> Result<Self, HipError> {
        set_device(ordinal)?;
        let mut p = ptr::null_mut();
        // SAFETY: writes one pointer.
        check(unsafe { sys::hipMalloc(&mut p, len.max(1)) }, || {
            format!("hipMalloc({len} bytes on device {ordinal})")
        })?;
        if p.is_null() {
            return Err(invalid(
                format!("hipMalloc({len} bytes on device {ordinal})"),
                "the runtime returned a null pointer",
            ));
        }
        Ok(DeviceMem {
            ptr: p,
            len,
            owned: true,
        })
    }

    /// The caller's `len` bytes at `ptr`, checked and wrapped without taking ownership (drop
    /// never frees them): the runtime is asked (`hipPointerGetAttributes`: device memory of
    /// device `ordinal`; `hipMemGetAddressRange`: `[ptr, ptr + len)` inside that one
    /// allocation). The error is the reason for a refusal. (Null, misaligned and wrapping
    /// ranges are refused before this, by [`quant_gpu::check_foreign_memory`].)
    ///
    /// # Safety
    /// The memory must stay allocated while the returned value and the work queued on it live.
    pub unsafe fn wrap(ordinal: usize, ptr: u64, len: usize) -> Result<Self, String> {
        let version = runtime_version().map_err(|e| e.to_string())?;
        set_device(ordinal).map_err(|e| e.to_string())?;
        let addr = ptr as usize as *mut c_void;
        // Room to spare after the struct, in case a runtime's is longer than ROCm 5.2's.
        #[repr(C)]
        struct Padded {
            attr: PointerAttributes,
            _spare: [u8; 256],
        }
        let mut a = MaybeUninit::<Padded>::zeroed();
        // SAFETY: the runtime writes one hipPointerAttribute_t (whose layout PointerAttributes
        // mirrors, with the enum as a plain u32) into zeroed memory with room to spare; it looks
        // the address up in its own tables and never dereferences it.
        check(
            unsafe {
                sys::hipPointerGetAttributes(
                    ptr::addr_of_mut!((*a.as_mut_ptr()).attr).cast(),
                    addr.cast_const(),
                )
            },
            || "hipPointerGetAttributes".into(),
        )
        .map_err(|e| format!("the HIP runtime does not know it as memory ({e})"))?;
        // SAFETY: zero-initialised plain data (integers and pointers), filled in by the runtime.
        let a = unsafe { a.assume_init() }.attr;
        check_attributes(
            MemoryKind::decode(a.memory_type, version),
            a.device,
            ordinal,
        )?;
        let (mut base, mut size): (sys::hipDeviceptr_t, usize) = (ptr::null_mut(), 0);
        // SAFETY: writes one address and one size; the address is only looked up.
        check(
            unsafe { sys::hipMemGetAddressRange(&mut base, &mut size, addr) },
            || "hipMemGetAddressRange".into(),
        )
        .map_err(|e| format!("the HIP runtime cannot give the allocation holding it ({e})"))?;
        check_within(ptr, len, base as usize as u64, size)?;
        Ok(DeviceMem {
            ptr: addr,
            len,
            owned: false,
        })
    }

    /// A value at `addr` that the runtime never saw, for unit tests of what is built on it.
    /// With `owned`, call [`DeviceMem::release`] before dropping it.
    #[cfg(test)]
    pub fn fake_for_test(addr: u64, len: usize, owned: bool) -> Self {
        DeviceMem {
            ptr: addr as usize as *mut c_void,
            len,
            owned,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Device address of the first byte (0 for an empty buffer).
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Whether drop frees the memory.
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Gives the allocation up: drop no longer frees it.
    pub fn release(&mut self) {
        self.owned = false;
    }

    fn at(&self, offset: usize, len: usize, op: &str) -> Result<*mut c_void, HipError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: in bounds of the allocation (or a null base with len 0).
                Ok(if len == 0 {
                    self.ptr
                } else {
                    unsafe { self.ptr.cast::<u8>().add(offset) }.cast()
                })
            }
            _ => Err(HipError {
                op: format!("{op}: {len} bytes at offset {offset}"),
                code: hipError_t::hipErrorInvalidValue as u32,
                name: "hipErrorInvalidValue".into(),
                message: format!("outside the buffer of {} bytes", self.len),
            }),
        }
    }
}

impl Drop for DeviceMem {
    fn drop(&mut self) {
        if self.owned && !self.ptr.is_null() {
            // SAFETY: allocated by hipMalloc (owned: neither wrapped nor released) and freed
            // once. Errors cannot be reported here.
            unsafe {
                let _ = sys::hipFree(self.ptr);
            }
        }
    }
}

/// Page-locked host memory from `hipHostMalloc` on one device, zeroed, freed on drop.
///
/// Behind a [`HostBuffer`] (what `alloc_host` returns) it is the source of asynchronous
/// uploads: the `HostBuffer` holds the fence of the last copy out of it and waits for it before
/// handing the bytes out for writing and before this is dropped.
#[derive(Debug)]
pub(crate) struct PinnedMem {
    ptr: *mut u8,
    len: usize,
    ordinal: usize,
}

// SAFETY: plain host memory owned by this value; the pointer is only dereferenced through
// `&self` (reads) and `&mut self` (writes).
unsafe impl Send for PinnedMem {}
// SAFETY: shared access only reads.
unsafe impl Sync for PinnedMem {}

impl PinnedMem {
    /// `hipHostMalloc(len)` on `ordinal` (at least one byte is allocated), zeroed.
    pub fn alloc(ordinal: usize, len: usize) -> Result<Self, HipError> {
        set_device(ordinal)?;
        let mut p = ptr::null_mut();
        // SAFETY: writes one pointer.
        check(
            unsafe { sys::hipHostMalloc(&mut p, len.max(1), sys::hipHostMallocDefault) },
            || format!("hipHostMalloc({len} bytes)"),
        )?;
        if p.is_null() {
            return Err(invalid(
                format!("hipHostMalloc({len} bytes)"),
                "the runtime returned a null pointer",
            ));
        }
        // SAFETY: p points at len.max(1) bytes just allocated, owned by nobody else yet.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0, len) };
        Ok(PinnedMem {
            ptr: p.cast(),
            len,
            ordinal,
        })
    }

    /// A value that owns nothing, for unit tests of the checks around it (never allocated,
    /// never freed).
    #[cfg(test)]
    pub fn empty_for_test(ordinal: usize) -> Self {
        PinnedMem {
            ptr: ptr::null_mut(),
            len: 0,
            ordinal,
        }
    }

    /// The memory.
    pub fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: len initialised (zeroed at allocation) bytes owned by self. The device only
        // reads them (uploads), never writes them.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The memory, for filling. Callers first wait for the copies that read it: the staging
    /// of `upload` waits for its events, a `HostBuffer` for its pending fence.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.ptr.is_null() {
            return &mut [];
        }
        // SAFETY: len bytes owned by self, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The device it was allocated on.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
}

impl RawHostBuffer for PinnedMem {
    fn as_slice(&self) -> &[u8] {
        PinnedMem::as_slice(self)
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        PinnedMem::as_mut_slice(self)
    }
    fn is_pinned(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for PinnedMem {
    fn drop(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: allocated by hipHostMalloc and freed once, after the last copy out of it (the
        // staging waits for its events before it is dropped; a HostBuffer waits for its pending
        // fence before dropping this).
        unsafe {
            let _ = sys::hipSetDevice(self.ordinal as i32);
            let _ = sys::hipHostFree(self.ptr.cast());
        }
    }
}

/// The page-locked memory behind `src` and the length of `range` in it, if `src` is
/// [`PinnedMem`] of device `ordinal` and `range` lies inside it; else `hipErrorInvalidValue`.
fn pinned_range<'a>(
    src: &'a HostBuffer,
    ordinal: usize,
    range: &Range<usize>,
) -> Result<(&'a PinnedMem, usize), HipError> {
    const OP: &str = "hipMemcpyHtoDAsync";
    let pinned = src
        .raw()
        .as_any()
        .downcast_ref::<PinnedMem>()
        .ok_or_else(|| invalid(OP, "the host buffer is not HIP page-locked memory"))?;
    if pinned.ordinal != ordinal {
        return Err(invalid(
            OP,
            format!(
                "the host buffer is page-locked memory of device {}, the stream is on device {}",
                pinned.ordinal, ordinal
            ),
        ));
    }
    if range.start > range.end || range.end > pinned.len {
        return Err(invalid(
            format!("{OP}: source range {}..{}", range.start, range.end),
            format!("outside the host buffer of {} bytes", pinned.len),
        ));
    }
    Ok((pinned, range.end - range.start))
}

/// The stream handles HIP gives a meaning other than a stream's address: `1` is
/// `hipStreamLegacy` in newer HIP, `2` is `hipStreamPerThread` (ROCm 5.2 has it), a different
/// stream in every host thread. DLPack does not allow either on ROCm. `0` is not among them: it
/// is the current device's null stream, which this crate always selects first.
pub(crate) const STREAM_SENTINELS: [usize; 2] = [1, 2];

/// Checks a caller's raw stream handle: `0` (the device's null stream) or a stream's address,
/// not one of [`STREAM_SENTINELS`]. The runtime cannot check more: ROCm 5.2 has no
/// `hipStreamGetDevice`, and its `hipStreamGetFlags` dereferences whatever it is given.
pub(crate) fn caller_stream(raw: usize, op: &str) -> Result<sys::hipStream_t, HipError> {
    if STREAM_SENTINELS.contains(&raw) {
        return Err(invalid(
            op,
            format!(
                "stream {raw} is a sentinel ({}), not a stream: pass a stream's handle, or 0 for \
                 the device's null stream",
                if raw == 1 {
                    "hipStreamLegacy"
                } else {
                    "hipStreamPerThread, a different stream in each host thread"
                }
            ),
        ));
    }
    Ok(raw as sys::hipStream_t)
}

/// A stream of one device: one this crate created (non-blocking, destroyed on drop) or the
/// caller's ([`Stream::borrowed`]: used, never destroyed).
#[derive(Debug)]
pub(crate) struct Stream {
    raw: sys::hipStream_t,
    ordinal: usize,
    /// Whether drop synchronizes and destroys it: `false` for the caller's stream.
    owned: bool,
}

// SAFETY: HIP streams may be used from any host thread.
unsafe impl Send for Stream {}
// SAFETY: as above.
unsafe impl Sync for Stream {}

impl Stream {
    /// `hipStreamCreateWithFlags(hipStreamNonBlocking)` on `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self, HipError> {
        set_device(ordinal)?;
        let mut raw = ptr::null_mut();
        // SAFETY: writes one handle.
        check(
            unsafe { sys::hipStreamCreateWithFlags(&mut raw, sys::hipStreamNonBlocking) },
            || format!("hipStreamCreateWithFlags(device {ordinal})"),
        )?;
        Ok(Stream {
            raw,
            ordinal,
            owned: true,
        })
    }

    /// The caller's stream `raw` of device `ordinal`, used but never destroyed (nor
    /// synchronized) on drop. A null `raw` is the device's null stream; the sentinels
    /// [`STREAM_SENTINELS`] are refused ([`caller_stream`]) before any runtime call.
    ///
    /// # Safety
    /// `raw` must be null or a live stream of device `ordinal` that outlives the returned value
    /// and everything that uses it.
    pub unsafe fn borrowed(ordinal: usize, raw: sys::hipStream_t) -> Result<Self, HipError> {
        let raw = caller_stream(raw as usize, "HipBackend::on_stream")?;
        Ok(Stream {
            raw,
            ordinal,
            owned: false,
        })
    }

    /// The raw handle.
    pub fn raw(&self) -> sys::hipStream_t {
        self.raw
    }

    /// Whether this crate created the stream (and destroys it on drop).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// `hipStreamSynchronize`.
    pub fn synchronize(&self) -> Result<(), HipError> {
        set_device(self.ordinal)?;
        // SAFETY: valid stream.
        check(unsafe { sys::hipStreamSynchronize(self.raw) }, || {
            "hipStreamSynchronize".into()
        })
    }

    /// Queues a copy of `len` bytes from the start of `src` to `dst` at `offset`
    /// (`hipMemcpyHtoDAsync`). The caller must not write `src` again before the copy is done
    /// (record an [`Event`] after it and wait on that).
    pub fn copy_htod(
        &self,
        dst: &DeviceMem,
        offset: usize,
        src: &PinnedMem,
        len: usize,
    ) -> Result<(), HipError> {
        let d = dst.at(offset, len, "hipMemcpyHtoDAsync")?;
        if len > src.len() {
            return Err(HipError {
                op: format!("hipMemcpyHtoDAsync: {len} bytes"),
                code: hipError_t::hipErrorInvalidValue as u32,
                name: "hipErrorInvalidValue".into(),
                message: format!("staging buffer holds {}", src.len()),
            });
        }
        if len == 0 {
            return Ok(());
        }
        set_device(self.ordinal)?;
        // SAFETY: both ranges are in bounds; src is pinned memory that outlives the copy (the
        // caller waits on an event before reusing or freeing it).
        check(
            unsafe { sys::hipMemcpyHtoDAsync(d, src.ptr.cast(), len, self.raw) },
            || format!("hipMemcpyHtoDAsync({len} bytes)"),
        )
    }

    /// Queues a copy of `src[range]` to `dst[offset..]` (`hipMemcpyHtoDAsync`), records
    /// `event` after it on this stream and hands `src` the fence (on `queue`, the queue this
    /// stream serves), so that safe code can neither write nor free the bytes before the copy
    /// has read them.
    ///
    /// `src` must be [`PinnedMem`] of this stream's device, `range` must lie inside it and
    /// `offset + range.len()` inside `dst`: anything else is refused before the runtime is
    /// called. An empty range queues nothing and leaves `src` as it was.
    pub fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &DeviceMem,
        offset: usize,
        event: Event,
    ) -> Result<(), HipError> {
        const OP: &str = "hipMemcpyHtoDAsync";
        let (pinned, len) = pinned_range(src, self.ordinal, &range)?;
        let d = dst.at(offset, len, OP)?;
        if event.ordinal != self.ordinal {
            return Err(invalid(
                "hipEventRecord",
                "the event belongs to another device",
            ));
        }
        if len == 0 {
            return Ok(());
        }
        set_device(self.ordinal)?;
        // In bounds of the allocation (checked above; non-null since len > 0 and alloc never
        // returns a null pointer).
        let s: *mut c_void = pinned.ptr.wrapping_add(range.start).cast();
        // SAFETY: the device range lies inside a live allocation and the host range inside the
        // page-locked allocation (both checked above). The host bytes stay alive and unwritten
        // until the copy has read them: the event recorded right after the copy goes into the
        // HostBuffer that owns them, which waits for it before it hands them out mutably or
        // frees them; if recording fails, we wait for the stream here instead.
        check(
            unsafe { sys::hipMemcpyHtoDAsync(d, s, len, self.raw) },
            || format!("{OP}({len} bytes)"),
        )?;
        if let Err(e) = event.record(self) {
            // The copy is queued but cannot be fenced: let it finish before `src` can be reused.
            let _ = self.synchronize();
            return Err(e);
        }
        src.set_pending(Fence::new(queue, Box::new(event)));
        Ok(())
    }

    /// Makes work queued on this stream after this call wait for `event` (`hipStreamWaitEvent`),
    /// without blocking the host. The event must belong to this stream's device.
    pub fn wait_event(&self, event: &Event) -> Result<(), HipError> {
        if event.ordinal != self.ordinal {
            return Err(invalid(
                "hipStreamWaitEvent",
                format!(
                    "the event belongs to device {}, the stream to device {}",
                    event.ordinal, self.ordinal
                ),
            ));
        }
        set_device(self.ordinal)?;
        // SAFETY: both handles are alive (the event is borrowed, the stream is self); the
        // runtime captures the event's last recorded state when the wait is queued.
        check(
            unsafe { sys::hipStreamWaitEvent(self.raw, event.raw, 0) },
            || "hipStreamWaitEvent".into(),
        )
    }

    /// Copies the first `dst.len()` bytes of `src` to `dst`, after all work queued on this
    /// stream, and waits for it (`hipMemcpyDtoHAsync` + `hipStreamSynchronize`).
    pub fn copy_dtoh_sync(&self, dst: &mut [u8], src: &DeviceMem) -> Result<(), HipError> {
        let s = src.at(0, dst.len(), "hipMemcpyDtoHAsync")?;
        if dst.is_empty() {
            return self.synchronize();
        }
        set_device(self.ordinal)?;
        // SAFETY: in bounds on both sides; we wait for the copy before dst's borrow ends.
        check(
            unsafe { sys::hipMemcpyDtoHAsync(dst.as_mut_ptr().cast(), s, dst.len(), self.raw) },
            || format!("hipMemcpyDtoHAsync({} bytes)", dst.len()),
        )?;
        self.synchronize()
    }

    /// Queues a device-to-device copy of `len` bytes (`hipMemcpyDtoDAsync`).
    pub fn copy_dtod(&self, dst: &DeviceMem, src: &DeviceMem, len: usize) -> Result<(), HipError> {
        let d = dst.at(0, len, "hipMemcpyDtoDAsync")?;
        let s = src.at(0, len, "hipMemcpyDtoDAsync")?;
        if len == 0 {
            return Ok(());
        }
        set_device(self.ordinal)?;
        // SAFETY: both ranges are in bounds of live allocations.
        check(
            unsafe { sys::hipMemcpyDtoDAsync(d, s, len, self.raw) },
            || format!("hipMemcpyDtoDAsync({len} bytes)"),
        )
    }

    /// Queues `hipMemsetAsync` of the whole buffer.
    pub fn memset(&self, dst: &DeviceMem, value: u8) -> Result<(), HipError> {
        if dst.len == 0 {
            return Ok(());
        }
        set_device(self.ordinal)?;
        // SAFETY: the whole live allocation.
        check(
            unsafe { sys::hipMemsetAsync(dst.ptr, i32::from(value), dst.len, self.raw) },
            || format!("hipMemsetAsync({} bytes)", dst.len),
        )
    }

    /// Queues one launch of a dequantization kernel, whose signature is
    /// `(const uint8_t* src, OUT* dst, uint64_t n_blocks)`, as `plan` says: `plan.groups()`
    /// groups of `plan.threads_per_group()` threads reading `src[plan.src_range()]` and writing
    /// `dst[plan.dst_range()]`. Refuses a plan whose ranges do not lie inside these buffers or
    /// do not match its block count ([`LaunchPlan::fits`]); launches nothing for zero blocks.
    pub fn launch_dequant(
        &self,
        f: &Function,
        plan: &LaunchPlan,
        src: &DeviceMem,
        dst: &DeviceMem,
    ) -> Result<(), HipError> {
        plan.check_fits(src.len, dst.len)
            .map_err(|message| HipError {
                op: "hipModuleLaunchKernel".into(),
                code: hipError_t::hipErrorInvalidValue as u32,
                name: "hipErrorInvalidValue".into(),
                message,
            })?;
        if plan.is_empty() {
            return Ok(());
        }
        let (grid, block) = (plan.groups(), plan.threads_per_group());
        set_device(self.ordinal)?;
        // In bounds (checked above): addresses inside the allocations, which are non-null since
        // a non-empty plan has non-empty ranges.
        let mut a_src: *mut c_void = src
            .ptr
            .cast::<u8>()
            .wrapping_add(plan.src_range().start)
            .cast();
        let mut a_dst: *mut c_void = dst
            .ptr
            .cast::<u8>()
            .wrapping_add(plan.dst_range().start)
            .cast();
        let mut a_n = plan.n_blocks();
        let mut params: [*mut c_void; 3] = [
            ptr::addr_of_mut!(a_src).cast(),
            ptr::addr_of_mut!(a_dst).cast(),
            ptr::addr_of_mut!(a_n).cast(),
        ];
        // SAFETY: the function comes from a loaded module that outlives it; the parameter array
        // points at three live locals matching the kernel's three parameters, and the runtime
        // copies them before returning; the two pointers address `n_blocks` blocks of input and
        // their values of output inside live allocations (checked above with `fits`).
        check(
            unsafe {
                sys::hipModuleLaunchKernel(
                    f.raw,
                    grid,
                    1,
                    1,
                    block,
                    1,
                    1,
                    0,
                    self.raw,
                    params.as_mut_ptr(),
                    ptr::null_mut(),
                )
            },
            || format!("hipModuleLaunchKernel({grid} x {block})"),
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.owned {
            // The caller's: it is theirs to synchronize and destroy.
            return;
        }
        // SAFETY: created by hipStreamCreateWithFlags (owned) and destroyed once.
        unsafe {
            let _ = sys::hipSetDevice(self.ordinal as i32);
            let _ = sys::hipStreamSynchronize(self.raw);
            let _ = sys::hipStreamDestroy(self.raw);
        }
    }
}

/// Makes work queued later on the caller's stream `target` wait, on the device, for everything
/// queued so far on `streams`: an event from `pool` is recorded on each and `target` waits for
/// them (`hipStreamWaitEvent`). `target` is a raw `hipStream_t` of the pool's device, or `0` for
/// that device's null stream; the sentinels `1` and `2` are refused before any runtime call.
/// The events go back to the pool at once: a queued wait captures the event's state when it is
/// queued.
///
/// # Safety
/// `target` must be `0` or a live stream of the pool's device.
pub(crate) unsafe fn make_stream_wait(
    pool: &Arc<EventPool>,
    streams: &[&Stream],
    target: usize,
) -> Result<(), HipError> {
    let t = caller_stream(target, "hipStreamWaitEvent")?;
    let mut events = Vec::with_capacity(streams.len());
    for s in streams {
        let e = pool.get()?;
        e.record(s)?;
        events.push(e);
    }
    set_device(pool.ordinal)?;
    for e in &events {
        // SAFETY: the event is alive and recorded on a stream of this device; the caller
        // vouches for the target stream (this function's contract).
        check(unsafe { sys::hipStreamWaitEvent(t, e.raw, 0) }, || {
            format!("hipStreamWaitEvent(stream {target:#x})")
        })?;
    }
    Ok(())
}

/// Synchronisation events (`hipEventDisableTiming`) of one device kept for reuse: the pipeline
/// records several per batch, and creating and destroying each costs more than recording it.
/// An [`Event`] from [`EventPool::get`] comes back here when it is dropped; the pool destroys
/// what it holds when the last of its events and its backend are gone.
#[derive(Debug)]
pub(crate) struct EventPool {
    ordinal: usize,
    free: Mutex<Vec<RawEvent>>,
}

/// An event handle not in use, kept by an [`EventPool`].
#[derive(Debug)]
struct RawEvent(sys::hipEvent_t);

// SAFETY: HIP event handles may be used from any host thread; a pooled one is used by nobody.
unsafe impl Send for RawEvent {}

impl EventPool {
    /// An empty pool for device `ordinal`.
    pub fn new(ordinal: usize) -> Arc<Self> {
        Arc::new(EventPool {
            ordinal,
            free: Mutex::new(Vec::new()),
        })
    }

    /// A synchronisation event: a pooled one, else a new one
    /// (`hipEventCreateWithFlags(hipEventDisableTiming)`). It returns to the pool on drop.
    pub fn get(self: &Arc<Self>) -> Result<Event, HipError> {
        let pooled = self.free.lock().pop();
        let raw = match pooled {
            Some(RawEvent(raw)) => raw,
            None => {
                set_device(self.ordinal)?;
                let mut raw = ptr::null_mut();
                // SAFETY: writes one handle.
                check(
                    unsafe { sys::hipEventCreateWithFlags(&mut raw, sys::hipEventDisableTiming) },
                    || {
                        format!(
                            "hipEventCreateWithFlags(hipEventDisableTiming, device {})",
                            self.ordinal
                        )
                    },
                )?;
                raw
            }
        };
        Ok(Event {
            raw,
            ordinal: self.ordinal,
            pool: Some(self.clone()),
        })
    }
}

impl Drop for EventPool {
    fn drop(&mut self) {
        let free = std::mem::take(self.free.get_mut());
        if free.is_empty() {
            return;
        }
        // SAFETY: each pooled event was created by `get`, is not in use (its `Event` was
        // dropped) and is destroyed once; waits queued on it earlier keep what they need.
        unsafe {
            let _ = sys::hipSetDevice(self.ordinal as i32);
            for RawEvent(raw) in free {
                let _ = sys::hipEventDestroy(raw);
            }
        }
    }
}

/// A HIP event: one with timing ([`Event::new`]), destroyed on drop, or a synchronisation
/// event from an [`EventPool`], returned to it on drop. As a [`RawFence`] it is what
/// `record` and `upload_async` put in a [`Fence`].
#[derive(Debug)]
pub(crate) struct Event {
    raw: sys::hipEvent_t,
    ordinal: usize,
    pool: Option<Arc<EventPool>>,
}

// SAFETY: HIP events may be used from any host thread.
unsafe impl Send for Event {}
// SAFETY: as above; every call through `&Event` is thread-safe in the runtime.
unsafe impl Sync for Event {}

impl Event {
    /// `hipEventCreate` on `ordinal`: an event that can time work.
    pub fn new(ordinal: usize) -> Result<Self, HipError> {
        set_device(ordinal)?;
        let mut raw = ptr::null_mut();
        // SAFETY: writes one handle.
        check(unsafe { sys::hipEventCreate(&mut raw) }, || {
            "hipEventCreate".into()
        })?;
        Ok(Event {
            raw,
            ordinal,
            pool: None,
        })
    }

    /// A value that owns no handle, for unit tests of the checks around it (never passed to
    /// the runtime: its drop does nothing).
    #[cfg(test)]
    pub fn null_for_test(ordinal: usize) -> Self {
        Event {
            raw: ptr::null_mut(),
            ordinal,
            pool: None,
        }
    }

    /// `hipEventRecord` on `stream`, which must be on this event's device.
    pub fn record(&self, stream: &Stream) -> Result<(), HipError> {
        if stream.ordinal != self.ordinal {
            return Err(invalid(
                "hipEventRecord",
                format!(
                    "the event belongs to device {}, the stream to device {}",
                    self.ordinal, stream.ordinal
                ),
            ));
        }
        set_device(self.ordinal)?;
        // SAFETY: valid event and stream, of the same device.
        check(unsafe { sys::hipEventRecord(self.raw, stream.raw) }, || {
            "hipEventRecord".into()
        })
    }

    /// `hipEventSynchronize`: blocks the calling thread until the work queued before the
    /// event's last record has finished (at once if it was never recorded).
    pub fn synchronize(&self) -> Result<(), HipError> {
        set_device(self.ordinal)?;
        // SAFETY: valid event.
        check(unsafe { sys::hipEventSynchronize(self.raw) }, || {
            "hipEventSynchronize".into()
        })
    }

    /// `hipEventElapsedTime(start, self)` in milliseconds.
    pub fn elapsed_since(&self, start: &Event) -> Result<f32, HipError> {
        let mut ms = 0f32;
        // SAFETY: writes one float; both events valid.
        check(
            unsafe { sys::hipEventElapsedTime(&mut ms, start.raw, self.raw) },
            || "hipEventElapsedTime".into(),
        )?;
        Ok(ms)
    }
}

impl RawFence for Event {
    fn wait(&self) -> Result<(), GpuError> {
        self.synchronize()
            .map_err(|e| quant_gpu::driver::DriverError::from(e).into())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        if let Some(pool) = &self.pool {
            // Recording it again later is allowed whatever waits on it now: a queued wait
            // captures the event's state when it is queued.
            pool.free.lock().push(RawEvent(self.raw));
            return;
        }
        // SAFETY: created by hipEventCreate and destroyed once.
        unsafe {
            let _ = sys::hipSetDevice(self.ordinal as i32);
            let _ = sys::hipEventDestroy(self.raw);
        }
    }
}

/// A loaded code object (`hipModuleLoadData`), unloaded on drop.
#[derive(Debug)]
pub(crate) struct Module {
    raw: sys::hipModule_t,
}

// SAFETY: module handles are process-wide and usable from any host thread.
unsafe impl Send for Module {}
// SAFETY: as above.
unsafe impl Sync for Module {}

impl Module {
    /// Loads `image` (an HSACO ELF or a clang offload bundle) onto `ordinal`.
    pub fn load(ordinal: usize, image: &[u8]) -> Result<Self, HipError> {
        set_device(ordinal)?;
        // The runtime reads the ELF through typed pointers: hand it 8-byte-aligned bytes.
        let mut aligned = vec![0u64; image.len().div_ceil(8)];
        // SAFETY: aligned has at least image.len() bytes; u64 has no invalid bit patterns.
        unsafe {
            ptr::copy_nonoverlapping(
                image.as_ptr(),
                aligned.as_mut_ptr().cast::<u8>(),
                image.len(),
            );
        }
        let mut raw = ptr::null_mut();
        // SAFETY: writes one handle; the image is copied by the runtime during the call.
        check(
            unsafe { sys::hipModuleLoadData(&mut raw, aligned.as_ptr().cast()) },
            || format!("hipModuleLoadData({} bytes)", image.len()),
        )?;
        Ok(Module { raw })
    }

    /// `hipModuleGetFunction`. The function is valid while `self` is.
    pub fn function(&self, name: &str) -> Result<Function, HipError> {
        let c = CString::new(name).map_err(|_| HipError {
            op: format!("hipModuleGetFunction({name:?})"),
            code: hipError_t::hipErrorInvalidValue as u32,
            name: "hipErrorInvalidValue".into(),
            message: "name contains a NUL byte".into(),
        })?;
        let mut raw = ptr::null_mut();
        // SAFETY: writes one handle; c is a valid C string.
        check(
            unsafe { sys::hipModuleGetFunction(&mut raw, self.raw, c.as_ptr()) },
            || format!("hipModuleGetFunction({name})"),
        )?;
        Ok(Function { raw })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: loaded by hipModuleLoadData and unloaded once.
        unsafe {
            let _ = sys::hipModuleUnload(self.raw);
        }
    }
}

/// A kernel in a [`Module`]. Keep the module alive as long as this.
#[derive(Debug)]
pub(crate) struct Function {
    raw: sys::hipFunction_t,
}

impl Function {
    /// Groups of `threads` threads of this kernel that one multiprocessor (compute unit) runs
    /// at once, given its registers and static shared memory
    /// (`hipModuleOccupancyMaxActiveBlocksPerMultiprocessor`).
    pub fn groups_per_multiprocessor(&self, threads: u32) -> Result<u32, HipError> {
        let op = || format!("hipModuleOccupancyMaxActiveBlocksPerMultiprocessor({threads})");
        let block = i32::try_from(threads).map_err(|_| HipError {
            op: op(),
            code: hipError_t::hipErrorInvalidValue as u32,
            name: "hipErrorInvalidValue".into(),
            message: "threads per group over i32".into(),
        })?;
        let mut n: std::ffi::c_int = 0;
        // SAFETY: writes one int; the function is alive while its module is (the caller's).
        check(
            unsafe {
                sys::hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(&mut n, self.raw, block, 0)
            },
            op,
        )?;
        Ok(u32::try_from(n).unwrap_or(0))
    }
}

// SAFETY: function handles are process-wide and usable from any host thread.
unsafe impl Send for Function {}
// SAFETY: as above.
unsafe impl Sync for Function {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bindings (HIP 5.4) must lay hipDeviceProp_t out as Debian's ROCm 5.2 header does:
    /// these offsets were printed by a C++ program compiled against /usr/include/hip.
    #[test]
    fn device_prop_layout_matches_rocm_5_2() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<sys::hipDeviceProp_t>(), 792);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, totalGlobalMem), 256);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, warpSize), 276);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, maxGridSize), 296);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, multiProcessorCount), 336);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, gcnArchName), 396);
    }

    #[test]
    fn errors_name_the_call() {
        let e = check(hipError_t::hipErrorNoDevice, || "hipGetDeviceCount".into()).unwrap_err();
        assert_eq!(e.code, 100);
        assert!(
            e.to_string()
                .starts_with("hipGetDeviceCount: hipErrorNoDevice (100)"),
            "{e}"
        );
        let e = check(hipError_t::hipErrorOutOfMemory, || "x".into()).unwrap_err();
        assert!(e.is_out_of_memory());
    }

    /// A host buffer that claims to be page-locked but is not HIP's (another backend's); the
    /// backend's tests use it too.
    #[derive(Debug)]
    pub(crate) struct OtherPinned(pub(crate) Vec<u8>);
    impl RawHostBuffer for OtherPinned {
        fn as_slice(&self) -> &[u8] {
            &self.0
        }
        fn as_mut_slice(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn is_pinned(&self) -> bool {
            true
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn async_upload_sources_are_checked() {
        let own = HostBuffer::new(Box::new(PinnedMem::empty_for_test(1)));
        assert!(own.is_pinned());
        assert!(own.is_empty());
        let (p, len) = pinned_range(&own, 1, &(0..0)).unwrap();
        assert_eq!((p.ordinal, len), (1, 0));
        // Past the end, reversed, another device.
        for (ordinal, range) in [
            (1, 0..1),
            (1, Range { start: 1, end: 0 }),
            (1, usize::MAX..usize::MAX),
            (0, 0..0),
        ] {
            let e = pinned_range(&own, ordinal, &range).unwrap_err();
            assert_eq!(e.code, hipError_t::hipErrorInvalidValue as u32, "{e}");
        }
        // Not HIP page-locked memory at all.
        for other in [
            HostBuffer::pageable(64),
            HostBuffer::new(Box::new(OtherPinned(vec![0; 64]))),
        ] {
            let e = pinned_range(&other, 0, &(0..8)).unwrap_err();
            assert!(e.message.contains("not HIP page-locked"), "{e}");
        }
    }

    #[test]
    fn pinned_memory_is_a_raw_host_buffer() {
        let mut p = PinnedMem::empty_for_test(0);
        assert!(RawHostBuffer::is_pinned(&p));
        assert!(RawHostBuffer::as_slice(&p).is_empty());
        assert!(RawHostBuffer::as_mut_slice(&mut p).is_empty());
        assert!(RawHostBuffer::as_any(&p).is::<PinnedMem>());
    }

    /// Without an AMD GPU, creating pinned memory or events fails with an error (no panic), and
    /// waiting on a fence reports the runtime's error as a `GpuError`.
    #[test]
    fn async_primitives_fail_cleanly_without_a_device() {
        if std::path::Path::new("/dev/kfd").exists() {
            return;
        }
        assert!(PinnedMem::alloc(0, 64).is_err());
        let pool = EventPool::new(0);
        assert!(pool.get().is_err());
        assert!(pool.free.lock().is_empty());
        drop(pool);
        let e = Event::null_for_test(0);
        match RawFence::wait(&e) {
            Err(GpuError::Driver { op, reason }) => {
                assert!(op.contains("hipSetDevice"), "{op}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected a driver error, got {other:?}"),
        }
        assert!(RawFence::as_any(&e).is::<Event>());
    }

    #[test]
    fn device_memory_ranges_are_checked() {
        let m = DeviceMem::fake_for_test(0, 0, false);
        assert!(m.at(0, 0, "t").is_ok());
        assert!(m.at(0, 1, "t").is_err());
        assert!(m.at(usize::MAX, 2, "t").is_err());
        let m = DeviceMem::fake_for_test(0x10_0000, 64, false);
        assert_eq!(m.at(16, 48, "t").unwrap() as usize, 0x10_0010);
        assert!(m.at(16, 49, "t").is_err());
    }

    /// ROCm 5.2's `hipPointerAttribute_t`, as a C++ program compiled against
    /// /usr/include/hip printed it (size 32; memoryType 0, device 4, devicePointer 8,
    /// hostPointer 16, isManaged 24, allocationFlags 28), is what our mirror and the bindings
    /// lay out.
    #[test]
    fn pointer_attributes_layout_matches_rocm_5_2() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<PointerAttributes>(), 32);
        assert_eq!(align_of::<PointerAttributes>(), 8);
        assert_eq!(offset_of!(PointerAttributes, memory_type), 0);
        assert_eq!(offset_of!(PointerAttributes, device), 4);
        assert_eq!(offset_of!(PointerAttributes, device_pointer), 8);
        assert_eq!(offset_of!(PointerAttributes, host_pointer), 16);
        assert_eq!(offset_of!(PointerAttributes, is_managed), 24);
        assert_eq!(offset_of!(PointerAttributes, allocation_flags), 28);
        type B = sys::hipPointerAttribute_t;
        assert_eq!(size_of::<B>(), size_of::<PointerAttributes>());
        assert_eq!(offset_of!(B, memoryType), 0);
        assert_eq!(offset_of!(B, device), 4);
        assert_eq!(offset_of!(B, devicePointer), 8);
        assert_eq!(offset_of!(B, hostPointer), 16);
        assert_eq!(offset_of!(B, isManaged), 24);
        assert_eq!(offset_of!(B, allocationFlags), 28);
        // The 5.x numbering the bindings carry (and ROCm 5.2's header: Device is 1).
        assert_eq!(sys::hipMemoryType::hipMemoryTypeDevice as u32, 1);
        assert_eq!(sys::hipMemoryType::hipMemoryTypeHost as u32, 0);
    }

    #[test]
    fn memory_types_are_decoded_for_the_runtimes_numbering() {
        use MemoryKind::*;
        let rocm5 = 50_221_153; // Debian's 5.2
        let rocm6 = 60_032_830;
        for (raw, five, six) in [
            (0, Host, Unregistered),
            (1, Device, Host),
            (2, Array, Device),
            (3, Unified, Managed),
            (4, Managed, Other(4)),
            (10, Other(10), Array),
            (11, Other(11), Unified),
            (99, Other(99), Other(99)),
        ] {
            assert_eq!(MemoryKind::decode(raw, rocm5), five, "{raw}");
            assert_eq!(MemoryKind::decode(raw, rocm6), six, "{raw}");
        }
    }

    #[test]
    fn only_this_devices_device_memory_is_accepted() {
        use MemoryKind::*;
        check_attributes(Device, 2, 2).unwrap();
        check_attributes(Managed, 0, 0).unwrap();
        for (kind, device, ordinal, why) in [
            (Device, 1, 2, "of device 1, not of device 2"),
            (Device, -1, 0, "of device -1"),
            (Host, 0, 0, "host memory"),
            (Array, 0, 0, "Array"),
            (Unified, 0, 0, "Unified"),
            (Unregistered, 0, 0, "does not know"),
            (Other(7), 0, 0, "Other(7)"),
        ] {
            let e = check_attributes(kind, device, ordinal).unwrap_err();
            assert!(e.contains(why), "{kind:?}: {e}");
        }
    }

    #[test]
    fn wrapped_ranges_must_lie_inside_one_allocation() {
        let (base, size) = (0x7f00_0000_0000u64, 4096usize);
        check_within(base, size, base, size).unwrap();
        check_within(base + 256, 3840, base, size).unwrap();
        check_within(base + 4096, 0, base, size).unwrap();
        for (ptr, len) in [
            (base, size + 1),
            (base + 256, 3841),
            (base - 256, 16),
            (base + 4096, 1),
            (u64::MAX - 15, 32),
        ] {
            let e = check_within(ptr, len, base, size).unwrap_err();
            assert!(e.contains("4096 bytes at 0x7f0000000000"), "{e}");
        }
        // An allocation whose end would overflow is refused, not trusted.
        assert!(check_within(u64::MAX - 15, 16, u64::MAX - 15, 32).is_err());
    }

    /// Without an AMD GPU, a well-formed address is refused with the runtime's reason (no panic,
    /// no dereference: the runtime only looks addresses up).
    #[test]
    fn wrap_without_a_device_is_refused_with_the_runtimes_reason() {
        if std::path::Path::new("/dev/kfd").exists() {
            return;
        }
        let host = [0u8; 64];
        let aligned = (host.as_ptr() as u64 + 15) & !15;
        for ptr in [0x7f00_0000_0000, aligned] {
            // SAFETY: refused; the runtime never writes through the address.
            match unsafe { DeviceMem::wrap(0, ptr, 16) } {
                Err(reason) => {
                    assert!(reason.contains("hipSetDevice(0): hipError"), "{reason}");
                }
                Ok(m) => panic!("wrapped {m:?} without a device"),
            }
        }
    }

    #[test]
    fn stream_sentinels_are_refused_and_the_null_stream_is_not() {
        assert!(caller_stream(0, "t").unwrap().is_null());
        assert_eq!(
            caller_stream(0x5555_0000, "t").unwrap() as usize,
            0x5555_0000
        );
        for (raw, name) in [(1, "hipStreamLegacy"), (2, "hipStreamPerThread")] {
            let e = caller_stream(raw, "hipStreamWaitEvent").unwrap_err();
            assert_eq!(e.code, hipError_t::hipErrorInvalidValue as u32);
            assert!(
                e.op == "hipStreamWaitEvent" && e.message.contains(name),
                "{e}"
            );
        }
    }

    /// A borrowed stream is never synchronized nor destroyed: dropping one over a handle that
    /// is no stream at all does nothing (an owned one would hand it to the runtime).
    #[test]
    fn borrowed_streams_are_not_destroyed() {
        // SAFETY: the handle is never used: the value is only inspected and dropped.
        let s = unsafe { Stream::borrowed(3, 0xdead_0000 as sys::hipStream_t) }.unwrap();
        assert!(!s.is_owned());
        assert_eq!(s.raw() as usize, 0xdead_0000);
        drop(s);
        // SAFETY: as above.
        let null = unsafe { Stream::borrowed(0, ptr::null_mut()) }.unwrap();
        assert!(null.raw().is_null() && !null.is_owned());
        for raw in [1usize, 2] {
            // SAFETY: refused before use.
            let e = unsafe { Stream::borrowed(0, raw as sys::hipStream_t) }.unwrap_err();
            assert!(e.op.contains("on_stream"), "{e}");
        }
    }

    /// Without a device, make_stream_wait fails with an error: the sentinels before any
    /// runtime call, anything else when the first event cannot be created.
    #[test]
    fn make_stream_wait_fails_cleanly_without_a_device() {
        let pool = EventPool::new(0);
        // SAFETY: no stream is used: refused, or no event can be made to record.
        let e = unsafe { make_stream_wait(&pool, &[], 2) }.unwrap_err();
        assert!(e.message.contains("hipStreamPerThread"), "{e}");
        if std::path::Path::new("/dev/kfd").exists() {
            return;
        }
        // SAFETY: the borrowed stream is never reached: creating its event fails first.
        let s = unsafe { Stream::borrowed(0, 0xdead_0000 as sys::hipStream_t) }.unwrap();
        // SAFETY: as above.
        let e = unsafe { make_stream_wait(&pool, &[&s], 0xbeef_0000) }.unwrap_err();
        assert!(
            e.op.contains("hipSetDevice") && e.name.starts_with("hipError"),
            "{e}"
        );
    }
}
