//! One reader's ring of staging slots: pinned host memory, the device memory kernels read,
//! and the fences that order their reuse.

use quant_gpu::{Backend, Buffer, Fence, GpuError, HostBuffer};

/// A staging slot. Before a reader overwrites `host`, [`HostBuffer::as_mut_slice`] waits for
/// the copy that last read it; before it queues a copy into `dev`, it waits for
/// `kernels_done`, the fence after the kernels that last read it.
pub(super) struct Slot {
    pub host: HostBuffer,
    pub dev: Option<Buffer>,
    pub kernels_done: Option<Fence>,
}

impl Slot {
    /// Makes the slot's device memory ready for a copy: allocated on first use with `bytes`
    /// bytes, and the kernels that last read it finished. They were queued a full turn of the ring ago and are
    /// all but always done: waiting on the host rather than in the copy queue keeps a wait
    /// from holding up every copy behind it.
    pub fn prepare_device_memory(
        &mut self,
        backend: &dyn Backend,
        bytes: usize,
    ) -> Result<(), GpuError> {
        if let Some(f) = self.kernels_done.take() {
            f.wait()?;
        }
        if self.dev.is_none() {
            self.dev = Some(backend.alloc(bytes)?);
        }
        Ok(())
    }
}

/// A reader's slots, used in turn; pinned lazily, on the reader's own thread, so that pinning
/// overlaps the first reads.
pub(super) struct Ring {
    slots: Vec<Slot>,
    next: usize,
    capacity: usize,
    host_bytes: usize,
}

impl Ring {
    /// A ring of at most `capacity` slots of `host_bytes` bytes.
    pub fn new(capacity: usize, host_bytes: usize) -> Self {
        Ring {
            slots: Vec::with_capacity(capacity),
            next: 0,
            capacity: capacity.max(1),
            host_bytes,
        }
    }

    /// The next slot in turn.
    pub fn next_slot(&mut self, backend: &dyn Backend) -> Result<&mut Slot, GpuError> {
        if self.slots.len() == self.next {
            self.slots.push(Slot {
                host: backend.alloc_host(self.host_bytes)?,
                dev: None,
                kernels_done: None,
            });
        }
        let k = self.next;
        self.next = (self.next + 1) % self.capacity;
        Ok(&mut self.slots[k])
    }
}
