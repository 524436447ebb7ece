//! [`Buffer`]: device memory as every backend hands it out, over a vendor's [`RawBuffer`];
//! [`RawAllocation`], the memory once given up to its caller.

use std::any::Any;
use std::fmt;

use crate::spec::DeviceKind;

/// A backend's own allocation behind a [`Buffer`]. Backends downcast it with [`Any`].
pub trait RawBuffer: Send + Sync + fmt::Debug {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Device address of the first byte (a `CUdeviceptr` or a HIP device pointer; for a test
    /// backend that keeps its "device" memory on the host, the host address).
    fn device_ptr(&self) -> u64;
    /// Whether dropping this buffer frees its memory: `false` for the caller's memory wrapped
    /// with [`Backend::wrap_device_memory`](crate::Backend::wrap_device_memory), and after [`RawBuffer::release`].
    fn owns_memory(&self) -> bool {
        true
    }
    /// Gives up the allocation: from now on dropping this value does not free the memory, which
    /// becomes the caller's to free. Called only through [`Buffer::into_raw`].
    fn release(&mut self);
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// For downcasting by the backend that made it.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting by the backend that made it.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Device memory owned by a backend; freed when dropped.
#[derive(Debug)]
pub struct Buffer {
    raw: Box<dyn RawBuffer>,
    device: (DeviceKind, usize),
}

impl Buffer {
    /// Wraps a backend's allocation. Only backends call this.
    pub fn new(raw: Box<dyn RawBuffer>, kind: DeviceKind, ordinal: usize) -> Self {
        Buffer {
            raw,
            device: (kind, ordinal),
        }
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }
    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// Device the buffer lives on.
    pub fn device(&self) -> (DeviceKind, usize) {
        self.device
    }
    /// Device address of the first byte, as the vendor API spells it (`CUdeviceptr`, HIP's
    /// `void*` as an integer).
    ///
    /// Reading it is safe; using it is the caller's business: it is valid while this buffer (or
    /// the [`DeviceTensor`](crate::DeviceTensor) holding it) lives, in the context of the backend that made it (for
    /// CUDA, the device's primary context, which the CUDA runtime, PyTorch and cudarc's
    /// `CudaContext::new` share). Work queued on the backend's stream is ordered before work on
    /// another stream only after [`Backend::make_stream_wait`](crate::Backend::make_stream_wait) or a synchronisation.
    pub fn device_ptr(&self) -> u64 {
        self.raw.device_ptr()
    }
    /// Whether dropping this buffer frees its memory (`false` for wrapped caller memory).
    pub fn owns_memory(&self) -> bool {
        self.raw.owns_memory()
    }
    /// Gives the allocation up to the caller: the memory is no longer freed on drop, and the
    /// returned [`RawAllocation`] says what to free (with `cuMemFree` in the backend's context
    /// for CUDA, `hipFree` on its device for HIP). For wrapped caller memory, which this buffer
    /// never owned, nothing changes hands.
    pub fn into_raw(mut self) -> RawAllocation {
        let allocation = RawAllocation {
            ptr: self.raw.device_ptr(),
            len: self.raw.len(),
            device: self.device,
            owned: self.raw.owns_memory(),
        };
        self.raw.release();
        allocation
    }
    /// The backend's allocation.
    pub fn raw(&self) -> &dyn RawBuffer {
        &*self.raw
    }
    /// The backend's allocation, mutably.
    pub fn raw_mut(&mut self) -> &mut dyn RawBuffer {
        &mut *self.raw
    }
}

/// Device memory given up by [`Buffer::into_raw`] or [`DeviceTensor::into_raw`](crate::DeviceTensor::into_raw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAllocation {
    /// Device address of the first byte.
    pub ptr: u64,
    /// Length in bytes (the allocation itself may be longer: at least one byte is always
    /// reserved, so an empty tensor has a valid address).
    pub len: usize,
    /// Vendor API and ordinal of the device.
    pub device: (DeviceKind, usize),
    /// Whether the memory is now the caller's to free: `true` for quantforge's own allocations
    /// (free with `cuMemFree` / `hipFree`), `false` for memory the caller wrapped in the first
    /// place.
    pub owned: bool,
}
