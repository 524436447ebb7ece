//! [`Pipelined`]: whole-model loading through a ring of staging slots, written once on top of
//! the [`Backend`] primitives.
//!
//! ```text
//!  reader thread r, its slot s:  fill host slot (pinned) from the file
//!                                   │ lane r: H2D into the slot's device memory
//!                                   ▼
//!                                lane r: kernels read the slot at offsets, write outputs
//!                                   │ (the next copy into the slot queues behind them)
//! ```
//!
//! The planner cuts tensors into pieces of whole blocks and packs them into slot-sized batches
//! (a large tensor spans several batches, many small ones share one). Each reader thread
//! (module `reader`) owns a few slots (module `ring`); it takes the next batch, fills one of
//! its slots and issues the batch itself. Batches are independent (each writes its own ranges
//! of its tensors' outputs), so the order in which readers issue them does not matter. An
//! allocator thread (module `outputs`) creates the outputs in job order while the first
//! batches are read. So reading, copying and dequantizing overlap, and host memory beyond the
//! page cache is the ring, whatever the model's size.
//!
//! Native blocks and kept integer tensors are copied from the host slot straight into their
//! outputs, and no kernel runs for them; so are the values of the float formats (which have no
//! kernel), which the reader makes on the host as it fills the slot. Tensors whose kernel
//! failed are loaded after the stream, one by one, through the one fallback.

mod outputs;
mod phases;
mod reader;
mod ring;

use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

use quant_gguf::TensorInfo;
use quant_gpu::{Backend, DeviceTensor, KernelSpec, Queue};

use crate::error::LoadError;
use crate::exec::{Core, Serial};
use crate::options::{PipelineOptions, Progress};
use crate::plan::{plan_batches, Batch, JobShape, TensorPlan, Work};
use crate::report::TensorLoad;
use outputs::{Output, Shared};
use phases::PhaseCounters;
use reader::{has_kernels, Source, Stream};
use ring::Ring;

/// A planned tensor.
pub(crate) type Job<'a> = (&'a TensorInfo, TensorPlan);

/// Loads planned tensors through the ring.
pub(crate) struct Pipelined<'a> {
    pub core: Core<'a>,
    pub backend: &'a dyn Backend,
    pub opts: &'a PipelineOptions,
}

impl Pipelined<'_> {
    /// Loads `jobs`; tensors and rows come back in their order. `progress` hears of bytes as
    /// batches are queued and of each tensor at the end.
    pub fn load(
        &self,
        jobs: &[Job],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<(DeviceTensor, TensorLoad)>, LoadError> {
        // Everything but a region's values cut on the host goes through the ring.
        let ringed = |(_, p): &&Job| !matches!(p.work, Work::Host { .. }) || p.trim.is_none();
        let piped: Vec<Job> = jobs.iter().filter(ringed).cloned().collect();
        let mut streamed = self.stream(&piped, false, progress)?.into_iter();
        let serial = Serial {
            core: self.core,
            backend: self.backend,
        };
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            let loaded = if ringed(&job) {
                let (out, time) = streamed.next().expect("one output per piped job");
                self.finish(&serial, job, out, time)?
            } else {
                serial.load(job.0, &job.1)?
            };
            done.push(loaded);
        }
        for (_, row) in &done {
            progress(&Progress::Tensor(row));
        }
        Ok(done)
    }

    /// The bare loop: every job's bytes read into the ring and copied to the device, with no
    /// outputs and no kernels.
    pub fn bare(&self, jobs: &[Job], progress: &mut dyn FnMut(&Progress)) -> Result<(), LoadError> {
        self.stream(jobs, true, progress).map(drop)
    }

    /// A streamed job's tensor and row: its output, or its fallback if its kernel failed.
    fn finish(
        &self,
        serial: &Serial,
        (t, plan): &Job,
        out: Output,
        time: std::time::Duration,
    ) -> Result<(DeviceTensor, TensorLoad), LoadError> {
        if let Some(e) = out.failed {
            drop(out.buffer);
            let t0 = std::time::Instant::now();
            let bytes = self.core.read(t, &plan.spans)?;
            let (buffer, uploaded, path) = serial.fall_back(t, plan, &bytes, e)?;
            return Ok(serial.made(t, plan, buffer, uploaded, path, t0.elapsed()));
        }
        // Host work uploads the values the reader made; the others, the file's bytes.
        let uploaded = match plan.work {
            Work::Host { .. } => plan.out_bytes,
            _ => plan.spans.total(),
        };
        let buffer = out.buffer.expect("every output was allocated");
        Ok(serial.made(t, plan, buffer, uploaded, plan.work.path(), time))
    }

    /// Streams `jobs` (kernels and copies only) through the ring and returns each job's output
    /// and time; `bare` streams copies only and returns no outputs.
    fn stream(
        &self,
        jobs: &[Job],
        bare: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<(Output, std::time::Duration)>, LoadError> {
        let shapes: Vec<JobShape> = jobs.iter().map(|(_, p)| JobShape::of(p)).collect();
        let slot_bytes = self.opts.slot_bytes.max(1);
        let batches = plan_batches(&shapes, slot_bytes).map_err(|reason| LoadError::Options {
            file: self.core.file.path().to_path_buf(),
            reason,
        })?;
        let sizes: Vec<usize> = match bare {
            true => Vec::new(),
            false => jobs.iter().map(|(_, p)| p.out_bytes as usize).collect(),
        };
        let shared = Shared::new(jobs.len());
        if batches.is_empty() {
            // Nothing to copy (tensors of no blocks): empty outputs.
            let alloc = |bytes| self.backend.alloc(bytes);
            shared.allocate(&sizes, alloc, |k, e| {
                self.core.gpu_err(jobs[k].0, self.backend, e)
            });
        } else {
            let stream = Stream {
                core: self.core,
                backend: self.backend,
                jobs,
                source: self.source(jobs[0].0)?,
                shared: &shared,
                dev_bytes: dev_bytes(&batches, |b| bare || has_kernels(jobs, b)),
                bare,
                batches: &batches,
                next: AtomicUsize::new(0),
            };
            let ran = self.run_threads(&stream, &sizes, progress);
            if let Some(e) = shared.take_error() {
                return Err(e);
            }
            ran?;
        }
        let times: Vec<_> = (0..jobs.len()).map(|k| shared.job_time(k)).collect();
        let outputs = shared.outputs.into_iter().map(|o| o.into_inner());
        Ok(outputs.zip(times).collect())
    }

    /// Where the readers get bytes: the parsed file, or with `direct_reads` on a mapped file
    /// positioned reads of the file opened again.
    fn source(&self, first: &TensorInfo) -> Result<Source, LoadError> {
        #[cfg(unix)]
        if self.opts.direct_reads && self.core.file.is_mapped() {
            let f = std::fs::File::open(self.core.file.path())
                .map_err(|e| self.core.read_err(first, &format!("opening the file: {e}")))?;
            return Ok(Source::Read(f));
        }
        let _ = first;
        Ok(Source::File)
    }

    /// Runs the allocator thread and the readers, reports progress on this thread, then drains
    /// both queues and frees the rings. Errors are left in `stream.shared`.
    fn run_threads(
        &self,
        stream: &Stream,
        sizes: &[usize],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), LoadError> {
        let (shared, backend, core) = (stream.shared, self.backend, &self.core);
        let first = stream.jobs[0].0;
        let spawn_err =
            |e: std::io::Error| core.read_err(first, &format!("starting a thread: {e}"));
        // At most one reader per slot, so that the ring stays within `ring_slots`.
        let n_slots = self.opts.ring_slots.max(1);
        let n_readers = self
            .opts
            .readers
            .max(1)
            .min(n_slots)
            .min(stream.batches.len());
        let per_reader = n_slots / n_readers;
        let host_bytes = stream.batches.iter().map(|b| b.used).max().unwrap_or(0);
        let (sent, received) = mpsc::channel::<u64>();
        let rings = std::thread::scope(|s| -> Result<Vec<Ring>, LoadError> {
            let alloc_err = |k: usize, e| core.gpu_err(stream.jobs[k].0, backend, e);
            let allocate = move || {
                if shared.wait_for_rings(n_readers) {
                    shared.allocate(sizes, |b| backend.alloc(b), alloc_err);
                }
            };
            let named = |name: String| std::thread::Builder::new().name(name);
            named("qf-alloc".into())
                .spawn_scoped(s, allocate)
                .map_err(spawn_err)?;
            // Kernel code is built or loaded beside the first reads, not at the first launch.
            // A kernel that cannot be prepared fails again at its launch, which reports it.
            let kernels = kernels_of(stream.jobs);
            let prepare = move || {
                kernels
                    .into_iter()
                    .for_each(|k| drop(backend.prepare_kernel(k)));
                PhaseCounters::mark(&shared.phases.modules_ready, shared.t_start);
            };
            named("qf-modules".into())
                .spawn_scoped(s, prepare)
                .map_err(spawn_err)?;
            let mut handles = Vec::with_capacity(n_readers);
            for r in 0..n_readers {
                let sent = sent.clone();
                let read = move || reader(stream, r, (per_reader, host_bytes), &sent);
                match named(format!("qf-reader-{r}")).spawn_scoped(s, read) {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        shared.fail(spawn_err(e));
                        break;
                    }
                }
            }
            drop(sent);
            for n in received {
                progress(&Progress::Bytes(n));
            }
            let mut rings = Vec::with_capacity(handles.len());
            for h in handles {
                match h.join() {
                    Ok(Ok(ring)) => rings.push(ring),
                    Ok(Err(())) => {} // recorded in `shared`
                    Err(_) => shared.fail(core.read_err(first, "a reader thread panicked")),
                }
            }
            Ok(rings)
        })?;
        let last_issue = shared.elapsed();
        // Let queued work (on every lane) finish before the rings' memory goes.
        let drained = backend.synchronize();
        let drained_at = shared.elapsed();
        drop(rings);
        shared.phases.log(
            &backend.info().label(),
            (stream.batches.len(), n_readers, per_reader),
            (last_issue, drained_at, shared.elapsed()),
        );
        drained.map_err(|e| core.gpu_err(first, backend, e))
    }
}

/// Reader thread `r`'s body: its ring of `slots` slots of `host_bytes` allocated (then counted
/// ready, see `Shared::wait_for_rings`), then batches on its own lane until none is left. An
/// error is recorded in the shared state.
fn reader(
    stream: &Stream,
    r: usize,
    (slots, host_bytes): (usize, usize),
    sent: &mpsc::Sender<u64>,
) -> Result<Ring, ()> {
    let first = stream.jobs[0].0;
    let result = Ring::new(stream.backend, slots, host_bytes, stream.dev_bytes)
        .map_err(|e| stream.core.gpu_err(first, stream.backend, e))
        .and_then(|mut ring| {
            stream.shared.ring_ready();
            stream.read_and_issue(Queue::Lane(r as u16), &mut ring, sent)?;
            Ok(ring)
        });
    result.map_err(|e| stream.shared.fail(e))
}

/// The distinct kernels `jobs` launch, in job order.
fn kernels_of(jobs: &[Job]) -> Vec<&'static KernelSpec> {
    let mut kernels: Vec<&'static KernelSpec> = Vec::new();
    for (_, plan) in jobs {
        if let Work::Kernel { spec, .. } = plan.work {
            if !kernels.iter().any(|k| std::ptr::eq(*k, spec)) {
                kernels.push(spec);
            }
        }
    }
    kernels
}

/// Device bytes a slot needs: the largest batch that goes through device memory.
fn dev_bytes(batches: &[Batch], through_device: impl Fn(&Batch) -> bool) -> usize {
    let used = batches.iter().filter(|b| through_device(b)).map(|b| b.used);
    used.max().unwrap_or(0)
}
