//! Primitives for pipelined uploads: host staging buffers, queues and fences.
//!
//! A backend that overlaps file reads, host-to-device copies and kernels implements
//! [`Backend::alloc_host`](crate::Backend::alloc_host),
//! [`Backend::upload_async`](crate::Backend::upload_async),
//! [`Backend::record`](crate::Backend::record), [`Backend::wait_fence`](crate::Backend::wait_fence)
//! and [`Backend::dequantize_at`](crate::Backend::dequantize_at) for real; the trait's defaults
//! do the same work serially. The pipeline itself is written once, in `quant-loader`.
//!
//! Safety of asynchronous copies is kept here, backend-neutrally: a [`HostBuffer`] remembers the
//! [`Fence`] after the last copy that reads it, and waits for it before it hands out its bytes
//! for writing and before it is freed.

use std::any::Any;
use std::fmt;
use std::ops::Range;

use crate::GpuError;

/// One of a backend's in-order work queues (CUDA streams, HIP streams).
///
/// Everything that is not an asynchronous upload or a kernel queued by
/// [`Backend::dequantize_at`](crate::Backend::dequantize_at) runs on [`Queue::Compute`], the
/// queue of the original [`Backend`](crate::Backend) methods. Work on one queue runs in order;
/// queues run beside each other, ordered only by fences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Kernels, fills, device copies and the synchronous transfers.
    Compute,
    /// Host-to-device copies.
    Copy,
    /// A queue of its own, one of any number a backend creates on first use: the pipeline gives
    /// each reader thread one, for its copies and its kernels, so that readers neither contend
    /// for one queue nor need fences between their own copies and kernels.
    Lane(u16),
}

/// A backend's host allocation behind a [`HostBuffer`]: page-locked where the backend has such
/// memory, ordinary memory otherwise.
pub trait RawHostBuffer: Send + fmt::Debug {
    /// The bytes.
    fn as_slice(&self) -> &[u8];
    /// The bytes, for writing. Only [`HostBuffer`] calls this, after waiting for pending copies.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Whether the memory is page-locked (the device can copy from it asynchronously).
    fn is_pinned(&self) -> bool;
    /// For downcasting by the backend that made it.
    fn as_any(&self) -> &dyn Any;
}

/// Ordinary (pageable) host memory: what [`Backend::alloc_host`](crate::Backend::alloc_host)
/// gives by default.
#[derive(Debug)]
struct Pageable(Vec<u8>);

impl RawHostBuffer for Pageable {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn is_pinned(&self) -> bool {
        false
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Host memory that the device may still be reading: a staging slot of the pipeline.
///
/// [`HostBuffer::as_mut_slice`] and dropping wait for the fence of the last asynchronous copy
/// out of it, so safe code cannot overwrite or free bytes that a copy in flight still reads.
#[derive(Debug)]
pub struct HostBuffer {
    // Field order matters for drop: `Drop` below waits for `pending` before `raw` is freed.
    pending: Option<Fence>,
    raw: Box<dyn RawHostBuffer>,
}

impl HostBuffer {
    /// Wraps a backend's host allocation. Only backends call this.
    pub fn new(raw: Box<dyn RawHostBuffer>) -> Self {
        HostBuffer { pending: None, raw }
    }

    /// `len` zeroed bytes of ordinary memory.
    pub fn pageable(len: usize) -> Self {
        Self::new(Box::new(Pageable(vec![0; len])))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.as_slice().len()
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the memory is page-locked.
    pub fn is_pinned(&self) -> bool {
        self.raw.is_pinned()
    }

    /// The bytes (reading them while the device also reads them is fine).
    pub fn as_slice(&self) -> &[u8] {
        self.raw.as_slice()
    }

    /// The bytes, for writing: first waits until no queued copy reads them any more.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8], GpuError> {
        self.wait_idle()?;
        Ok(self.raw.as_mut_slice())
    }

    /// Waits for the last asynchronous copy out of this buffer.
    pub fn wait_idle(&mut self) -> Result<(), GpuError> {
        if let Some(f) = self.pending.take() {
            if let Err(e) = f.wait() {
                self.pending = Some(f);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The backend's allocation (for the backend that made it).
    pub fn raw(&self) -> &dyn RawHostBuffer {
        &*self.raw
    }

    /// The fence after the last asynchronous copy out of this buffer, if one is pending: a queue
    /// may wait for it with [`Backend::wait_fence`](crate::Backend::wait_fence) instead of
    /// recording a fence of its own.
    pub fn pending(&self) -> Option<&Fence> {
        self.pending.as_ref()
    }

    /// Called by a backend right after it queued a copy that reads this buffer: `fence` must
    /// complete only after that copy has. Replaces an earlier fence: queues are in order, and a
    /// backend records the fence on the queue of the latest copy, after every earlier one.
    pub fn set_pending(&mut self, fence: Fence) {
        self.pending = Some(fence);
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        if let Some(f) = self.pending.take() {
            // Nothing sensible is left to do on failure: the device is lost, and with it the copy.
            let _ = f.wait();
        }
    }
}

/// A backend's marker in one of its queues behind a [`Fence`].
pub trait RawFence: Send + Sync + fmt::Debug {
    /// Blocks the calling thread until the work queued before the marker has finished.
    fn wait(&self) -> Result<(), GpuError>;
    /// For downcasting by the backend that made it.
    fn as_any(&self) -> &dyn Any;
}

/// A point in a queue: done once all work queued before it has finished.
#[derive(Debug)]
pub struct Fence {
    queue: Queue,
    raw: Option<Box<dyn RawFence>>,
}

impl Fence {
    /// A fence that is already complete (what serial backends return).
    pub fn done(queue: Queue) -> Self {
        Fence { queue, raw: None }
    }

    /// Wraps a backend's marker recorded on `queue`. Only backends call this.
    pub fn new(queue: Queue, raw: Box<dyn RawFence>) -> Self {
        Fence {
            queue,
            raw: Some(raw),
        }
    }

    /// The queue it was recorded on.
    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// The backend's marker, or `None` for [`Fence::done`].
    pub fn raw(&self) -> Option<&dyn RawFence> {
        self.raw.as_deref()
    }

    /// Blocks until the fence is complete.
    pub fn wait(&self) -> Result<(), GpuError> {
        match &self.raw {
            Some(r) => r.wait(),
            None => Ok(()),
        }
    }
}

/// Checks that `len` bytes at `offset` lie inside a device buffer of `buffer_len` bytes, for
/// `op`: [`GpuError::BufferSize`] past its end, [`GpuError::Overflow`] where the sum overflows.
pub fn check_region(
    op: &'static str,
    offset: usize,
    len: usize,
    buffer_len: usize,
) -> Result<(), GpuError> {
    match offset.checked_add(len) {
        Some(end) if end <= buffer_len => Ok(()),
        Some(end) => Err(GpuError::BufferSize {
            op,
            have: buffer_len,
            need: end,
        }),
        None => Err(GpuError::Overflow {
            op,
            what: format!("{len} bytes at offset {offset}"),
        }),
    }
}

/// Checks an upload of `range` of a host buffer of `host_len` bytes to `dst_offset..` of a
/// device buffer of `dst_len` bytes (what [`Backend::upload_async`](crate::Backend::upload_async)
/// is given) and returns its length. Errors, never panics: a reversed range is
/// [`GpuError::Overflow`], a range past either buffer's end [`GpuError::BufferSize`].
pub fn check_upload(
    range: &Range<usize>,
    host_len: usize,
    dst_offset: usize,
    dst_len: usize,
) -> Result<usize, GpuError> {
    if range.start > range.end {
        return Err(GpuError::Overflow {
            op: "upload_async (source range)",
            what: format!("range {}..{} ends before it starts", range.start, range.end),
        });
    }
    if range.end > host_len {
        return Err(GpuError::BufferSize {
            op: "upload_async (source range)",
            have: host_len,
            need: range.end,
        });
    }
    let len = range.end - range.start;
    check_region("upload_async", dst_offset, len, dst_len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn upload_ranges_are_checked_without_panics() {
        // In bounds, including empty ranges at either end and an exact fit.
        assert_eq!(check_upload(&(0..8), 8, 0, 8).unwrap(), 8);
        assert_eq!(check_upload(&(2..6), 8, 12, 16).unwrap(), 4);
        assert_eq!(check_upload(&(8..8), 8, 16, 16).unwrap(), 0);
        assert_eq!(check_upload(&(0..0), 0, 0, 0).unwrap(), 0);
        // Outside the host buffer.
        match check_upload(&(4..9), 8, 0, 64) {
            Err(GpuError::BufferSize { op, have, need }) => {
                assert_eq!((op, have, need), ("upload_async (source range)", 8, 9));
            }
            other => panic!("{other:?}"),
        }
        // Reversed.
        assert!(matches!(
            check_upload(&Range { start: 6, end: 2 }, 8, 0, 64),
            Err(GpuError::Overflow { .. })
        ));
        // Past the end of the device buffer, and an offset that overflows.
        match check_upload(&(0..8), 8, 9, 16) {
            Err(GpuError::BufferSize { op, have, need }) => {
                assert_eq!((op, have, need), ("upload_async", 16, 17));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_upload(&(0..8), 8, usize::MAX - 3, usize::MAX),
            Err(GpuError::Overflow { .. })
        ));
    }

    #[test]
    fn regions_are_checked_without_panics() {
        assert!(check_region("upload_at", 8, 8, 16).is_ok());
        assert!(matches!(
            check_region("upload_at", 9, 8, 16),
            Err(GpuError::BufferSize {
                op: "upload_at",
                have: 16,
                need: 17
            })
        ));
        assert!(matches!(
            check_region("upload_at", usize::MAX, 1, 16),
            Err(GpuError::Overflow { .. })
        ));
    }

    #[derive(Debug)]
    struct Counting(Arc<AtomicUsize>);
    impl RawFence for Counting {
        fn wait(&self) -> Result<(), GpuError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn writing_or_dropping_a_host_buffer_waits_for_its_copy() {
        let waits = Arc::new(AtomicUsize::new(0));
        let mut h = HostBuffer::pageable(8);
        assert!(!h.is_pinned());
        assert_eq!(h.len(), 8);
        h.set_pending(Fence::new(Queue::Copy, Box::new(Counting(waits.clone()))));
        h.as_mut_slice().unwrap()[0] = 1;
        assert_eq!(waits.load(Ordering::SeqCst), 1);
        // Once waited, the fence is gone: a second write does not wait again.
        h.as_mut_slice().unwrap()[1] = 2;
        assert_eq!(waits.load(Ordering::SeqCst), 1);
        h.set_pending(Fence::new(Queue::Copy, Box::new(Counting(waits.clone()))));
        drop(h);
        assert_eq!(waits.load(Ordering::SeqCst), 2);
        assert!(Fence::done(Queue::Compute).wait().is_ok());
    }
}
