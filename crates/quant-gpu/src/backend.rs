//! [`Backend`]: the device operations the loader and the tools run, which each vendor's crate
//! implements.

use std::ops::Range;

use crate::buffer::Buffer;
use crate::device::{DeviceInfo, MemInfo};
use crate::error::GpuError;
use crate::stage::{check_upload, Fence, HostBuffer, Queue};
use quant_core::{KernelSpec, OutputDType};

/// One GPU, through one vendor API.
///
/// All methods are safe; implementations keep their FFI in one private layer. Work is issued on
/// the backend's stream ([`Queue::Compute`]) in call order; [`Backend::download`] and
/// [`Backend::synchronize`] wait for it. A backend is shared between threads (`Send + Sync`).
///
/// The methods after [`Backend::time_events`] are the primitives of pipelined loading
/// (pinned staging, a second queue for copies, fences between queues, transfers and kernels at
/// offsets). Their defaults run serially and are correct for any backend; a backend that
/// implements them for real returns `true` from [`Backend::async_primitives`].
pub trait Backend: Send + Sync {
    /// The device.
    fn info(&self) -> &DeviceInfo;

    /// Free and total device memory now.
    fn mem_info(&self) -> Result<MemInfo, GpuError>;

    /// Allocates `bytes` bytes of device memory (contents undefined).
    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError>;

    /// Copies `src` to the start of `dst` (through pinned staging memory where the backend has
    /// it). Fails if `dst` is too small.
    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError>;

    /// Copies the first `dst.len()` bytes of `src` to the host, waiting for queued work first.
    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError>;

    /// Sets every byte of `buf` to `value` (used to poison outputs in tests).
    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError>;

    /// Device-to-device copy of `src` into `dst` (both the same length): the bandwidth baseline.
    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError>;

    /// [`Backend::copy`] queued on `queue`. Default, for backends with one queue:
    /// [`Backend::copy`].
    fn copy_on(&self, queue: Queue, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        let _ = queue;
        self.copy(src, dst)
    }

    /// Runs a format's dequantization kernel: `src` holds `n_blocks` blocks, `dst` receives
    /// `n_blocks * kernel.geometry.block_elems` values of `dtype`. The module is built or loaded on first use and
    /// cached per device and format.
    fn dequantize(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
    ) -> Result<(), GpuError>;

    /// Waits for all queued work.
    fn synchronize(&self) -> Result<(), GpuError>;

    /// Wraps `len` bytes of device memory at `ptr` that the caller owns, so that loads and
    /// kernels can write into it (`GgufLoader::dequantize_into`). The returned [`Buffer`] never
    /// frees the memory. Backends check what they can: a null or misaligned pointer (kernels
    /// store 16 bytes at a time: [`KERNEL_ALIGN`](crate::KERNEL_ALIGN)) is refused, and the CUDA and HIP backends ask
    /// the driver that `[ptr, ptr + len)` lies inside one allocation of this device.
    ///
    /// Default: [`GpuError::Unsupported`].
    ///
    /// # Safety
    /// The memory must stay allocated, and must not be used by anything else that conflicts with
    /// this backend's writes, until the returned buffer is dropped and the work queued on it has
    /// finished ([`Backend::synchronize`] or [`Backend::make_stream_wait`]).
    #[allow(unsafe_code)] // a contract on the caller; the default touches nothing
    unsafe fn wrap_device_memory(&self, ptr: u64, len: usize) -> Result<Buffer, GpuError> {
        let _ = (ptr, len);
        Err(GpuError::Unsupported {
            op: "wrap_device_memory",
            reason: "this backend cannot use memory it did not allocate".into(),
        })
    }

    /// Makes work queued later on `stream`, a stream of the caller's, wait for everything queued
    /// on this backend so far, without blocking the host. This is what DLPack's
    /// `__dlpack__(stream=...)` asks of a producer. The handle is DLPack's: on CUDA a raw
    /// `CUstream` of this backend's context or the sentinels `1` (the legacy default stream) and
    /// `2` (the per-thread default stream), `0` refused as ambiguous; on HIP a raw `hipStream_t`
    /// of this device, `0` being the device's null stream, `1` and `2` refused.
    ///
    /// Default: [`Backend::synchronize`], which orders every stream after the work.
    ///
    /// # Safety
    /// `stream` must be a live stream of this backend's device and context (or a sentinel).
    #[allow(unsafe_code)] // a contract on the caller; the default touches nothing
    unsafe fn make_stream_wait(&self, stream: usize) -> Result<(), GpuError> {
        let _ = stream;
        self.synchronize()
    }

    /// Times `op` `iters` times with device events and returns each run's milliseconds.
    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError>;

    /// Whether this backend implements the pipeline primitives below for real (page-locked
    /// host memory, a copy queue that overlaps the compute queue, offsets). With `false` the
    /// loader loads tensor by tensor through the original methods.
    fn async_primitives(&self) -> bool {
        false
    }

    /// Allocates `bytes` bytes of host memory for staging, page-locked where the backend can.
    /// Default: ordinary memory.
    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        Ok(HostBuffer::pageable(bytes))
    }

    /// Copies `src[range]` to `dst[dst_offset..]`, queued on `queue`, and marks `src` busy until
    /// the copy has finished ([`HostBuffer::set_pending`]). Default: a synchronous
    /// [`Backend::upload_at`].
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        let _ = queue;
        check_upload(&range, src.len(), dst_offset, dst.len())?;
        self.upload_at(&src.as_slice()[range], dst, dst_offset)
    }

    /// Copies `src` to `dst[dst_offset..]` and returns when it has landed. Default:
    /// [`Backend::upload`] when `dst_offset` is 0, else [`GpuError::Unsupported`].
    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        if dst_offset == 0 {
            self.upload(src, dst)
        } else {
            Err(GpuError::Unsupported {
                op: "upload_at",
                reason: "this backend uploads to the start of a buffer only".into(),
            })
        }
    }

    /// Copies `src` to the start of `dst` straight from ordinary (pageable) host memory, without
    /// staging: the baseline that pinned staging is measured against. Default: [`Backend::upload`].
    fn upload_pageable(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.upload(src, dst)
    }

    /// A fence after the work queued on `queue` so far. Default: waits for all work and returns
    /// a completed fence.
    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        self.synchronize()?;
        Ok(Fence::done(queue))
    }

    /// Makes work queued on `queue` after this call wait for `fence` (recorded on either queue
    /// of this backend), without blocking the host. Default: blocks the host on the fence.
    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        let _ = queue;
        fence.wait()
    }

    /// [`Backend::dequantize`] on a sub-range, queued on `queue`: reads `n_blocks` blocks at
    /// `src[src_offset..]` and writes their values at `dst[dst_offset..]`. Offsets are in bytes;
    /// the loader keeps them multiples of 256. Default: [`Backend::dequantize`] (which waits)
    /// when both offsets are 0, else [`GpuError::Unsupported`].
    #[allow(clippy::too_many_arguments)]
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
        let _ = queue;
        if src_offset == 0 && dst_offset == 0 {
            self.dequantize(kernel, src, n_blocks, dst, dtype)
        } else {
            Err(GpuError::Unsupported {
                op: "dequantize_at",
                reason: "this backend launches kernels on whole buffers only".into(),
            })
        }
    }

    /// Builds or loads `kernel`'s code now rather than at its first launch, so that a load can
    /// do it beside its first reads. Default: nothing (a backend without modules).
    fn prepare_kernel(&self, kernel: &'static KernelSpec) -> Result<(), GpuError> {
        let _ = kernel;
        Ok(())
    }

    /// Groups of `kernel`'s entry point for `dtype` that the whole device runs at once
    /// (multiprocessors × the kernel's occupancy), so that work can be sized to whole waves.
    /// Default: `None`, unknown (a backend without multiprocessors).
    fn resident_groups(
        &self,
        kernel: &'static KernelSpec,
        dtype: OutputDType,
    ) -> Result<Option<u64>, GpuError> {
        let _ = (kernel, dtype);
        Ok(None)
    }

    /// [`Backend::dequantize`] queued on a stream of the caller's (a `CUstream` or
    /// `hipStream_t` of this backend's device context, as an integer; 0 is the legacy default
    /// stream), not on the backend's own queues, and not waited for: the caller orders it with
    /// its other work on that stream. Nothing is allocated. Default, for backends without
    /// streams (the test backends): [`Backend::dequantize`] at once, `stream` unused.
    ///
    /// # Safety
    /// `stream` must be a live stream of this backend's device context; `src` and `dst` must
    /// stay allocated until the kernel has run.
    #[allow(unsafe_code)] // a contract on the caller; the default touches nothing
    unsafe fn dequantize_on_stream(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        stream: usize,
    ) -> Result<(), GpuError> {
        let _ = stream;
        self.dequantize(kernel, src, n_blocks, dst, dtype)
    }
}
