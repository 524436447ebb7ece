//! The state the pipeline's threads share: the outputs, which the allocator thread creates in
//! job order while the readers start, the first error, and per-job timings.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use quant_gpu::{Buffer, GpuError};

use super::phases::PhaseCounters;
use crate::error::LoadError;

/// One job's output as the readers share it.
#[derive(Default)]
pub(super) struct Output {
    pub buffer: Option<Buffer>,
    /// A kernel that could not run: the tensor falls back after the stream.
    pub failed: Option<GpuError>,
}

/// What the reader threads and the allocator thread share.
pub(super) struct Shared {
    pub outputs: Vec<Mutex<Output>>,
    /// Outputs allocated so far (in job order), under a lock the readers wait on.
    allocated: Mutex<usize>,
    allocated_cv: Condvar,
    /// Readers whose rings are allocated, under a lock the allocator thread waits on.
    rings: Mutex<usize>,
    rings_cv: Condvar,
    /// Set on the first error; everyone stops at the next batch.
    abort: AtomicBool,
    error: Mutex<Option<LoadError>>,
    /// Per job, nanoseconds since the start plus one (0: never) when its first batch was taken
    /// and its last batch issued.
    pub started: Vec<AtomicU64>,
    pub finished: Vec<AtomicU64>,
    pub phases: PhaseCounters,
    pub t_start: Instant,
}

impl Shared {
    /// State for `jobs` jobs.
    pub fn new(jobs: usize) -> Self {
        Shared {
            outputs: (0..jobs).map(|_| Mutex::default()).collect(),
            allocated: Mutex::new(0),
            allocated_cv: Condvar::new(),
            rings: Mutex::new(0),
            rings_cv: Condvar::new(),
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            started: (0..jobs).map(|_| AtomicU64::new(u64::MAX)).collect(),
            finished: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
            phases: PhaseCounters::new(),
            t_start: Instant::now(),
        }
    }

    /// Records the first error and stops everyone.
    pub fn fail(&self, e: LoadError) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(e);
        }
        self.abort.store(true, Ordering::SeqCst);
        // Wake readers waiting for outputs, and the allocator waiting for rings.
        drop(self.allocated.lock());
        self.allocated_cv.notify_all();
        drop(self.rings.lock());
        self.rings_cv.notify_all();
    }

    /// A reader's ring is allocated.
    pub fn ring_ready(&self) {
        *self.rings.lock() += 1;
        self.rings_cv.notify_all();
    }

    /// Waits until `readers` rings are allocated: the outputs' allocations, hundreds of calls
    /// into the driver, then no longer hold up the readers' pinning of their slots. `false` if
    /// the load aborted.
    pub fn wait_for_rings(&self, readers: usize) -> bool {
        let mut n = self.rings.lock();
        while *n < readers {
            if self.aborted() {
                return false;
            }
            self.rings_cv.wait(&mut n);
        }
        true
    }

    /// Whether the load has failed.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// The first error, once every thread has stopped.
    pub fn take_error(&self) -> Option<LoadError> {
        self.error.lock().take()
    }

    /// Nanoseconds since the start, plus one.
    pub fn since_start(&self) -> u64 {
        self.t_start.elapsed().as_nanos() as u64 + 1
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.t_start.elapsed()
    }

    /// Job `k`'s time from its first batch taken to its last issued.
    pub fn job_time(&self, k: usize) -> Duration {
        let (a, b) = (&self.started[k], &self.finished[k]);
        let (a, b) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        if a == u64::MAX || b == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(b.saturating_sub(a))
        }
    }

    /// Allocates the outputs of `sizes` in order with `alloc`, waking readers as each exists.
    pub fn allocate(
        &self,
        sizes: &[usize],
        alloc: impl Fn(usize) -> Result<Buffer, GpuError>,
        err: impl Fn(usize, GpuError) -> LoadError,
    ) {
        for (k, &bytes) in sizes.iter().enumerate() {
            if self.aborted() {
                return;
            }
            let t = Instant::now();
            let made = alloc(bytes);
            PhaseCounters::add(&self.phases.allocating, t);
            match made {
                Ok(b) => {
                    self.outputs[k].lock().buffer = Some(b);
                    *self.allocated.lock() = k + 1;
                    self.allocated_cv.notify_all();
                }
                Err(e) => return self.fail(err(k, e)),
            }
        }
        PhaseCounters::mark(&self.phases.outputs_done, self.t_start);
    }

    /// Waits until the outputs of jobs `0..=k` exist. `false` if the load aborted.
    pub fn wait_for_output(&self, k: usize) -> bool {
        let mut n = self.allocated.lock();
        while *n <= k {
            if self.aborted() {
                return false;
            }
            self.allocated_cv.wait(&mut n);
        }
        true
    }
}
