//! [`Cancellable`]: a device's backend as one whole-model load sees it, failing every new
//! allocation, copy and kernel once a flag is set, so that a load interrupted from Python
//! (Ctrl-C seen by the progress callback) stops its reader threads at their next step instead
//! of running to the end. The loader's error path then waits for the work already queued and
//! frees everything the load took.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use quantforge::gpu::{
    Backend, Buffer, DeviceInfo, Fence, GpuError, HostBuffer, KernelSpec, MemInfo, OutputDType,
    Queue,
};

/// `inner`, refusing new work once `cancelled` is set.
pub(crate) struct Cancellable<'a> {
    pub inner: &'a dyn Backend,
    pub cancelled: &'a AtomicBool,
}

impl Cancellable<'_> {
    fn go_on(&self, op: &'static str) -> Result<(), GpuError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(GpuError::Unsupported {
                op,
                reason: "the load was interrupted".into(),
            });
        }
        Ok(())
    }
}

// Every method is forwarded, the trait's defaults included, so that the inner backend's own
// implementations run; those that queue new work check the flag first. A method added to the
// trait must be forwarded here too, or the wrapper would run its default instead of the
// backend's.
impl Backend for Cancellable<'_> {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }

    fn mem_info(&self) -> Result<MemInfo, GpuError> {
        self.inner.mem_info()
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        self.go_on("alloc")?;
        self.inner.alloc(bytes)
    }

    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.go_on("upload")?;
        self.inner.upload(src, dst)
    }

    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError> {
        self.inner.download(src, dst)
    }

    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError> {
        self.inner.fill(buf, value)
    }

    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        self.go_on("copy")?;
        self.inner.copy(src, dst)
    }

    fn dequantize(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        self.go_on("dequantize")?;
        self.inner.dequantize(kernel, src, n_blocks, dst, dtype)
    }

    fn synchronize(&self) -> Result<(), GpuError> {
        self.inner.synchronize()
    }

    unsafe fn wrap_device_memory(&self, ptr: u64, len: usize) -> Result<Buffer, GpuError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.wrap_device_memory(ptr, len) }
    }

    unsafe fn make_stream_wait(&self, stream: usize) -> Result<(), GpuError> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.make_stream_wait(stream) }
    }

    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError> {
        self.inner.time_events(iters, op)
    }

    fn async_primitives(&self) -> bool {
        self.inner.async_primitives()
    }

    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        self.go_on("alloc_host")?;
        self.inner.alloc_host(bytes)
    }

    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        self.go_on("upload_async")?;
        self.inner.upload_async(queue, src, range, dst, dst_offset)
    }

    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        self.go_on("upload_at")?;
        self.inner.upload_at(src, dst, dst_offset)
    }

    fn upload_pageable(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.go_on("upload_pageable")?;
        self.inner.upload_pageable(src, dst)
    }

    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        self.inner.record(queue)
    }

    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        self.inner.wait_fence(queue, fence)
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
        self.go_on("dequantize_at")?;
        self.inner
            .dequantize_at(kernel, src, src_offset, n_blocks, dst, dst_offset, dtype)
    }

    fn prepare_kernel(&self, kernel: &'static KernelSpec) -> Result<(), GpuError> {
        self.inner.prepare_kernel(kernel)
    }

    unsafe fn dequantize_on_stream(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        stream: usize,
    ) -> Result<(), GpuError> {
        self.go_on("dequantize_on_stream")?;
        // SAFETY: forwarded from this function's contract.
        unsafe {
            self.inner
                .dequantize_on_stream(kernel, src, n_blocks, dst, dtype, stream)
        }
    }
}
