//! One reader's ring of staging slots: pinned host memory and the device memory kernels read.

use quant_gpu::{Backend, Buffer, GpuError, HostBuffer};

/// A staging slot. Before a reader overwrites `host`, [`HostBuffer::as_mut_slice`] waits for
/// the copy that last read it. `dev` (allocated up front by [`Ring::reserve`], else at its
/// first use) needs no wait: the copies into it and the kernels that read it are all on the
/// reader's lane, in order.
pub(super) struct Slot {
    pub host: HostBuffer,
    pub dev: Option<Buffer>,
}

/// A reader's slots, used in turn, allocated on the reader's own thread: all at once by
/// [`Ring::reserve`] before the outputs are (see `Shared::wait_for_rings`), or lazily.
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

    /// Allocates every slot now: pinned host memory, and `dev_bytes` of device memory each when
    /// not 0. Pinning and allocating take the driver's locks; done before the outputs' many
    /// allocations start, they do not queue behind them.
    pub fn reserve(&mut self, backend: &dyn Backend, dev_bytes: usize) -> Result<(), GpuError> {
        while self.slots.len() < self.capacity {
            let dev = match dev_bytes {
                0 => None,
                n => Some(backend.alloc(n)?),
            };
            self.slots.push(Slot {
                host: backend.alloc_host(self.host_bytes)?,
                dev,
            });
        }
        Ok(())
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
