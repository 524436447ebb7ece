//! One reader's ring of staging slots: pinned host memory and the device memory kernels read.

use quant_gpu::{Backend, Buffer, GpuError, HostBuffer};

/// A staging slot. Before a reader overwrites `host`, [`HostBuffer::as_mut_slice`] waits for
/// the copy that last read it. `dev` (allocated at its first use) needs no wait: the copies
/// into it and the kernels that read it are all on the reader's lane, in order.
pub(super) struct Slot {
    pub host: HostBuffer,
    pub dev: Option<Buffer>,
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
            });
        }
        let k = self.next;
        self.next = (self.next + 1) % self.capacity;
        Ok(&mut self.slots[k])
    }
}
