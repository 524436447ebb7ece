//! A reader thread: takes the next batch, fills one of its slots from the file and issues the
//! batch itself on its own lane ([`Queue::Lane`]): the copy, then the kernels that read what it
//! copied. Work on a lane runs in order, so a kernel follows its copy and the next copy into the
//! slot's device memory follows the kernels that read it, with no fence between them; readers
//! do not contend for one queue. No batch waits for a hand-off to another thread, and a slot
//! stays with the core that writes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use quant_core::cpu;
use quant_gguf::TensorInfo;
use quant_gpu::{Backend, GpuError, Queue};

use super::outputs::Shared;
use super::phases::PhaseCounters;
use super::ring::{Ring, Slot};
use crate::error::LoadError;
use crate::exec::{is_kernel_failure, Core};
use crate::plan::{Batch, Piece, TensorPlan, Work};

/// Where reader threads get file bytes.
pub(super) enum Source {
    /// The file through the parsed `GgufFile`: a copy out of its mapping, or (unmapped) a
    /// positioned read of the file it keeps open.
    File,
    /// `direct_reads` on a mapped file: positioned reads of a separately opened `File`.
    #[cfg(unix)]
    Read(std::fs::File),
}

/// Whether a batch holds a kernel's piece.
pub(super) fn has_kernels(jobs: &[(&TensorInfo, TensorPlan)], batch: &Batch) -> bool {
    let kernel = |p: &Piece| matches!(jobs[p.job].1.work, Work::Kernel { .. });
    batch.pieces.iter().any(kernel)
}

/// What every reader thread of one stream shares.
pub(super) struct Stream<'s> {
    pub core: Core<'s>,
    pub backend: &'s dyn Backend,
    /// The jobs that travel through the ring.
    pub jobs: &'s [(&'s TensorInfo, TensorPlan)],
    pub batches: &'s [Batch],
    pub source: Source,
    pub shared: &'s Shared,
    /// Device bytes of a slot.
    pub dev_bytes: usize,
    /// Copies only: no outputs, no kernels (the bare loop).
    pub bare: bool,
    /// The next batch to take.
    pub next: AtomicUsize,
}

impl Stream<'_> {
    fn gpu(&self, e: GpuError) -> LoadError {
        self.core.gpu_err(self.jobs[0].0, self.backend, e)
    }

    fn has_kernels(&self, batch: &Batch) -> bool {
        !self.bare && has_kernels(self.jobs, batch)
    }

    /// Takes batches until none is left or the load failed, issuing them on `lane`; `sent`
    /// gets each batch's bytes.
    pub fn read_and_issue(
        &self,
        lane: Queue,
        ring: &mut Ring,
        sent: &Sender<u64>,
    ) -> Result<(), LoadError> {
        let phases = &self.shared.phases;
        while !self.shared.aborted() {
            self.core.check_cancel()?;
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(batch) = self.batches.get(i) else {
                return Ok(());
            };
            let taken = self.shared.since_start();
            for p in &batch.pieces {
                self.shared.started[p.job].fetch_min(taken, Ordering::Relaxed);
            }
            let slot = ring.next_slot();
            let t = Instant::now();
            let host = slot.host.as_mut_slice().map_err(|e| {
                let first = self.jobs[batch.pieces[0].job].0;
                self.core
                    .read_err(first, &format!("waiting for a staging slot: {e}"))
            })?;
            PhaseCounters::add(&phases.slot_waits, t);
            let t = Instant::now();
            self.fill(batch, host)?;
            PhaseCounters::add(&phases.reading, t);
            self.issue(batch, slot, lane)?;
            let _ = sent.send(batch.pieces.iter().map(|p| self.file_bytes(p)).sum());
        }
        Ok(())
    }

    /// Bytes of the file behind piece `p`.
    fn file_bytes(&self, p: &Piece) -> u64 {
        p.n_blocks * self.jobs[p.job].1.geometry.block_bytes as u64
    }

    /// Reads one batch's pieces into a host slot whose last copy has finished.
    fn fill(&self, batch: &Batch, host: &mut [u8]) -> Result<(), LoadError> {
        if let Source::File = self.source {
            if self.core.file.is_mapped() {
                self.core.check_unchanged()?;
            }
        }
        for p in &batch.pieces {
            let (t, plan) = &self.jobs[p.job];
            let dst = &mut host[p.slot_offset..p.slot_offset + p.len];
            match plan.work {
                Work::Host { format, dtype, .. } => {
                    // The slot takes the values: read the blocks aside, then convert.
                    let bb = plan.geometry.block_bytes as u64;
                    let mut blocks = vec![0u8; (p.n_blocks * bb) as usize];
                    self.read_spans(t, plan, p.first_block * bb, &mut blocks)?;
                    let mut values = vec![0f32; p.len / dtype.size()];
                    format.dequantize_fast(&blocks, &mut values);
                    dst.copy_from_slice(&cpu::encode_as(&values, dtype));
                }
                _ => self.read_spans(t, plan, p.job_offset, dst)?,
            }
        }
        // After the bytes are in the slot: a file rewritten while they were read is an error.
        self.core.check_unchanged()
    }

    /// Reads `dst.len()` bytes of `plan`'s spans, from byte `at` of them read one after
    /// another.
    fn read_spans(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
        at: u64,
        dst: &mut [u8],
    ) -> Result<(), LoadError> {
        let mut done = 0;
        for (offset, len) in plan.spans.segments(at, dst.len() as u64) {
            self.read(t, offset, &mut dst[done..done + len as usize])?;
            done += len as usize;
        }
        Ok(())
    }

    fn read(&self, t: &TensorInfo, offset: u64, dst: &mut [u8]) -> Result<(), LoadError> {
        match &self.source {
            Source::File => Ok(self.core.file.read_tensor_at(t, offset, dst)?),
            #[cfg(unix)]
            Source::Read(f) => {
                use std::os::unix::fs::FileExt;
                let at = self.core.file.data_offset() + t.offset + offset;
                f.read_exact_at(dst, at).map_err(|e| {
                    let reason = format!("reading {} bytes at {at}: {e}", dst.len());
                    self.core.read_err(t, &reason)
                })
            }
        }
    }

    /// Queues batch `batch`, filled into `slot`, on `lane`: see the module's doc.
    fn issue(&self, batch: &Batch, slot: &mut Slot, lane: Queue) -> Result<(), LoadError> {
        let shared = self.shared;
        let t = Instant::now();
        let last_job = batch.pieces.last().expect("batches are not empty").job;
        if !self.bare && !shared.wait_for_output(last_job) {
            return Ok(()); // aborted; the error is already recorded
        }
        PhaseCounters::add(&shared.phases.output_waits, t);
        let t = Instant::now();
        let now = shared.since_start();
        shared.phases.first_issue.fetch_min(now, Ordering::Relaxed);
        if self.has_kernels(batch) || self.bare {
            let b = self.backend;
            let dev = slot
                .dev
                .as_mut()
                .expect("a ring with kernels has device slots");
            b.upload_async(lane, &mut slot.host, 0..batch.used, dev, 0)
                .map_err(|e| self.gpu(e))?;
        }
        if !self.bare {
            for p in &batch.pieces {
                self.issue_piece(p, slot, lane)?;
            }
        }
        let now = shared.since_start();
        for p in &batch.pieces {
            shared.finished[p.job].fetch_max(now, Ordering::Relaxed);
        }
        PhaseCounters::add(&shared.phases.issuing, t);
        Ok(())
    }

    /// Queues one piece on `lane`: a kernel reading the slot's device memory, or a copy of the
    /// blocks from the host slot straight into the output.
    fn issue_piece(&self, p: &Piece, slot: &mut Slot, lane: Queue) -> Result<(), LoadError> {
        let (t, plan) = &self.jobs[p.job];
        let b = self.backend;
        let mut out = self.shared.outputs[p.job].lock();
        let out = &mut *out;
        let buffer = out.buffer.as_mut().expect("waited for above");
        match plan.work {
            Work::Kernel { spec, dtype, .. } if out.failed.is_none() => {
                let dev = slot
                    .dev
                    .as_ref()
                    .expect("allocated for a batch with kernels");
                let at = p.first_block as usize * plan.geometry.block_elems * dtype.size();
                let (n, from) = (p.n_blocks, p.slot_offset);
                let r = b.dequantize_at(lane, spec, dev, from, n, buffer, at, dtype);
                match r {
                    Ok(()) => {}
                    Err(e) if is_kernel_failure(&e) => out.failed = Some(e),
                    Err(e) => return Err(self.core.gpu_err(t, b, e)),
                }
            }
            Work::Kernel { .. } => {} // failed before: the tensor falls back after the stream
            Work::Copy { .. } | Work::Host { .. } => {
                let range = p.slot_offset..p.slot_offset + p.len;
                let at = p.job_offset as usize;
                b.upload_async(lane, &mut slot.host, range, buffer, at)
                    .map_err(|e| self.core.gpu_err(t, b, e))?;
            }
        }
        Ok(())
    }
}
