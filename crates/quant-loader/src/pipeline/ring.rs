//! One reader's ring of staging slots: pinned host memory and the device memory kernels read.

use quant_gpu::{Backend, Buffer, GpuError, HostBuffer};

/// A staging slot. Before a reader overwrites `host`, [`HostBuffer::as_mut_slice`] waits for
/// the copy that last read it. `dev` (present when the stream has kernels, or is the bare loop)
/// needs no wait: the copies into it and the kernels that read it are all on the reader's lane,
/// in order.
pub(super) struct Slot {
    pub host: HostBuffer,
    pub dev: Option<Buffer>,
}

/// A reader's slots, used in turn, all allocated at once on the reader's own thread before the
/// outputs are (see `Shared::wait_for_rings`).
pub(super) struct Ring {
    slots: Vec<Slot>,
    next: usize,
}

impl Ring {
    /// `capacity` slots (at least one) of `host_bytes` pinned host bytes, and `dev_bytes` of
    /// device memory each when not 0. Pinning and allocating take the driver's locks; done
    /// before the outputs' many allocations start, they do not queue behind them.
    pub fn new(
        backend: &dyn Backend,
        capacity: usize,
        host_bytes: usize,
        dev_bytes: usize,
    ) -> Result<Self, GpuError> {
        let slot = || -> Result<Slot, GpuError> {
            let dev = match dev_bytes {
                0 => None,
                n => Some(backend.alloc(n)?),
            };
            let host = backend.alloc_host(host_bytes)?;
            Ok(Slot { host, dev })
        };
        let slots = (0..capacity.max(1))
            .map(|_| slot())
            .collect::<Result<_, _>>()?;
        Ok(Ring { slots, next: 0 })
    }

    /// The next slot in turn.
    pub fn next_slot(&mut self) -> &mut Slot {
        let k = self.next;
        self.next = (self.next + 1) % self.slots.len();
        &mut self.slots[k]
    }
}
