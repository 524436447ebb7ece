//! Where a pipelined load's time goes, summed over its reader threads, for `-v` logging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters the reader threads add to (nanoseconds).
#[derive(Default)]
pub(super) struct PhaseCounters {
    /// Waiting for a slot's last copy before overwriting it.
    pub slot_waits: AtomicU64,
    /// Filling slots from the file.
    pub reading: AtomicU64,
    /// Waiting for the allocator thread's outputs.
    pub output_waits: AtomicU64,
    /// Queueing copies, waits, kernels and fences.
    pub issuing: AtomicU64,
    /// Since the start, plus one, when the first batch was issued (`u64::MAX`: never).
    pub first_issue: AtomicU64,
    /// The allocator thread's time in `alloc` calls.
    pub allocating: AtomicU64,
    /// Since the start, plus one, when the last output was allocated.
    pub outputs_done: AtomicU64,
    /// Since the start, plus one, when every kernel was prepared.
    pub modules_ready: AtomicU64,
}

impl PhaseCounters {
    /// Counters with no batch issued yet.
    pub fn new() -> Self {
        let c = Self::default();
        c.first_issue.store(u64::MAX, Ordering::Relaxed);
        c
    }

    /// Adds the time since `since` to `counter`.
    pub fn add(counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records in `counter` the time since `start` (plus one).
    pub fn mark(counter: &AtomicU64, start: Instant) {
        counter.store(start.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
    }

    /// Logs the phases of a stream of `batches` batches by `readers` readers; `ends` are the
    /// times since the start when the last batch was issued, the queues drained and the ring
    /// freed.
    pub fn log(
        &self,
        device: &str,
        shape: (usize, usize, usize),
        ends: (Duration, Duration, Duration),
    ) {
        let nanos = |n: &AtomicU64| Duration::from_nanos(n.load(Ordering::Relaxed));
        let (batches, readers, slots_per_reader) = shape;
        tracing::info!(
            device,
            batches,
            readers,
            slots_per_reader,
            "pipeline phases, summed over readers: waiting for a slot's last copy {:?}, \
             reading {:?}, waiting for outputs {:?}, issuing {:?}; allocating outputs {:?}; \
             since the start: kernels prepared {:?}, outputs allocated {:?}, first batch \
             issued {:?}, last {:?}, drained {:?}, ring freed {:?}",
            nanos(&self.slot_waits),
            nanos(&self.reading),
            nanos(&self.output_waits),
            nanos(&self.issuing),
            nanos(&self.allocating),
            nanos(&self.modules_ready),
            nanos(&self.outputs_done),
            nanos(&self.first_issue),
            ends.0,
            ends.1,
            ends.2,
        );
    }
}
