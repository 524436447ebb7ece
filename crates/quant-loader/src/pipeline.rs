//! Pipelined whole-model loading, written once on top of the [`Backend`] primitives.
//!
//! ```text
//!  reader threads ──► host ring slot s (pinned) ──► copy queue: H2D into device ring slot s
//!                                                      │ fence
//!                                                      ▼
//!                        compute queue: kernels read device slot s at offsets, write outputs
//!                                                      │ fence (slot s free again)
//! ```
//!
//! Tensors are cut into [`Piece`]s of whole blocks and packed into slot-sized [`Batch`]es (a
//! large tensor spans several batches, many small ones share one). Reader threads each take a
//! free host slot and the next batch number and fill the slot from the file; the issuing thread
//! issues filled slots in the order the readers finish them (batches are independent: each
//! writes its own ranges of its tensors' outputs). The `k`-th batch issued uses device slot
//! `k % slots`. Before a reader overwrites a host slot, [`HostBuffer::as_mut_slice`] waits
//! for the copy that last read it; before the copy queue overwrites a device slot, it waits (on
//! the device) for the kernels that last read it; kernels wait (on the device) for the copy of
//! their batch. So reading, copying and dequantizing overlap, and host memory beyond the page
//! cache is the ring, whatever the model's size.
//!
//! With [`LoadAs::Native`] the blocks are copied straight from the host slot into the output
//! buffers, and no kernel runs.

use std::time::{Duration, Instant};

use quant_core::{BlockGeometry, KernelSpec, OutputDType};
use quant_gguf::TensorInfo;
use quant_gpu::{Backend, Buffer, Fence, GpuError, HostBuffer, Queue, TensorDType};

use crate::{is_kernel_failure, GgufLoader, LoadError, LoadPath, TensorLoad};

/// Offsets of pieces inside a ring slot, and of kernel outputs, are multiples of this.
pub const ALIGN: usize = 256;

/// What to put on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadAs {
    /// Dequantized values of this type.
    Values(OutputDType),
    /// The file's blocks untouched ([`TensorDType::Native`]).
    Native,
}

impl LoadAs {
    /// Parses the CLI spelling: `f32`, `f16`, `bf16` or `native`.
    pub fn from_name(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("native") {
            return Some(LoadAs::Native);
        }
        OutputDType::from_name(s).map(LoadAs::Values)
    }

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            LoadAs::Values(d) => d.name(),
            LoadAs::Native => "native",
        }
    }

    /// Bytes a tensor occupies on the device when loaded this way.
    pub fn output_bytes(self, t: &TensorInfo) -> u64 {
        match self {
            LoadAs::Values(d) => t.n_elements.saturating_mul(d.size() as u64),
            LoadAs::Native => t.n_bytes,
        }
    }

    /// What the device tensor of `t` holds when loaded this way.
    pub fn tensor_dtype(self, t: &TensorInfo) -> TensorDType {
        match self {
            LoadAs::Values(d) => TensorDType::Values(d),
            LoadAs::Native => TensorDType::Native(t.ty),
        }
    }
}

impl From<OutputDType> for LoadAs {
    fn from(d: OutputDType) -> Self {
        LoadAs::Values(d)
    }
}

impl std::fmt::Display for LoadAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How [`GgufLoader::load_with`] moves a model to a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The pipeline of this module where the backend has the primitives
    /// ([`Backend::async_primitives`]), else [`Strategy::Serial`].
    #[default]
    Pipelined,
    /// Tensor by tensor: upload, kernel, synchronize.
    Serial,
    /// The seed's old path, as a baseline: dequantize to f32 on the CPU, convert to the output
    /// type, and upload the values from ordinary memory ([`Backend::upload_pageable`]), tensor
    /// by tensor.
    CpuDequant,
}

impl Strategy {
    /// Parses the CLI spelling: `pipelined`, `serial`, `cpu-dequant`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "pipelined" => Some(Strategy::Pipelined),
            "serial" => Some(Strategy::Serial),
            "cpu-dequant" => Some(Strategy::CpuDequant),
            _ => None,
        }
    }
}

/// Options of [`GgufLoader::load_with`].
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// Strategy.
    pub strategy: Strategy,
    /// Ring slots (at least 1; 2 or more to overlap).
    pub ring_slots: usize,
    /// Bytes per ring slot, host and device. A slot must hold at least one block.
    pub slot_bytes: usize,
    /// Reader threads filling host slots from the file, each a whole slot at a time (at most
    /// one per slot).
    pub readers: usize,
}

impl Default for PipelineOptions {
    /// Readers on half the cores (at most 8: copying out of the page cache is bound by host
    /// memory bandwidth, which the copy engine shares, and the issuing thread needs a core),
    /// eight more slots than readers so that copies are in flight while every reader works,
    /// 2 MiB per slot (a copy of 2 MiB takes about 38 us at 55 GB/s, above the cost of issuing
    /// it, and a ring this small stays in the last-level cache). On an H200 host these were
    /// the fastest of the settings tried (docs/performance.md).
    fn default() -> Self {
        let readers = std::thread::available_parallelism()
            .map(|n| (n.get() / 2).clamp(1, 8))
            .unwrap_or(4);
        PipelineOptions {
            strategy: Strategy::Pipelined,
            ring_slots: readers + 8,
            slot_bytes: 2 << 20,
            readers,
        }
    }
}

impl PipelineOptions {
    /// Device memory the ring takes at most, in bytes.
    pub fn ring_bytes(&self) -> u64 {
        (self.ring_slots as u64).saturating_mul(self.slot_bytes as u64)
    }
}

/// Progress of a load, reported as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// This many more bytes of the file were read and queued for the device.
    Bytes(u64),
    /// A tensor is done.
    Tensor(&'a TensorLoad),
}

/// A contiguous run of one tensor's blocks inside one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Index of the job (tensor) in the list given to [`plan_batches`].
    pub job: usize,
    /// First block of the run.
    pub first_block: u64,
    /// Blocks in the run.
    pub n_blocks: u64,
    /// Byte offset of the run inside the slot (a multiple of [`ALIGN`]).
    pub slot_offset: usize,
    /// Bytes of the run.
    pub len: usize,
}

/// The pieces that travel together in one ring slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// In slot order.
    pub pieces: Vec<Piece>,
    /// Bytes of the slot used (end of the last piece).
    pub used: usize,
}

/// The geometry the planner needs of one job.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobShape {
    /// Blocks in the tensor.
    pub blocks: u64,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Every piece but a tensor's last holds a multiple of this many blocks (so that kernel
    /// outputs start at multiples of [`ALIGN`]).
    pub block_multiple: u64,
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Blocks per piece must be a multiple of this so that `blocks * block_elems * value_size` is a
/// multiple of [`ALIGN`].
pub(crate) fn block_multiple(out_bytes_per_block: u64) -> u64 {
    let a = ALIGN as u64;
    a / gcd(a, out_bytes_per_block.max(1))
}

/// Cuts jobs into pieces of whole blocks and packs them, in order, into batches of at most
/// `slot_bytes`. Errors when a slot cannot hold `block_multiple` blocks of some job.
pub(crate) fn plan_batches(jobs: &[JobShape], slot_bytes: usize) -> Result<Vec<Batch>, String> {
    let mut batches = Vec::new();
    let mut cur = Batch::default();
    for (j, shape) in jobs.iter().enumerate() {
        let bb = shape.block_bytes as u64;
        let m = shape.block_multiple.max(1);
        if bb == 0 {
            return Err(format!("job {j} has blocks of 0 bytes"));
        }
        if (slot_bytes as u64) < bb.saturating_mul(m.min(shape.blocks.max(1))) {
            return Err(format!(
                "a ring slot of {slot_bytes} bytes cannot hold {} block(s) of {bb} bytes",
                m.min(shape.blocks.max(1))
            ));
        }
        let mut done = 0u64;
        while done < shape.blocks {
            let left = shape.blocks - done;
            let start = align_up(cur.used);
            let space = slot_bytes.saturating_sub(start) as u64;
            let mut fit = space / bb;
            if fit < left {
                fit -= fit % m;
            }
            let take = fit.min(left);
            if take == 0 {
                if cur.pieces.is_empty() {
                    return Err(format!(
                        "a ring slot of {slot_bytes} bytes cannot hold a piece of job {j}"
                    ));
                }
                batches.push(std::mem::take(&mut cur));
                continue;
            }
            let len = (take * bb) as usize;
            cur.pieces.push(Piece {
                job: j,
                first_block: done,
                n_blocks: take,
                slot_offset: start,
                len,
            });
            cur.used = start + len;
            done += take;
        }
    }
    if !cur.pieces.is_empty() {
        batches.push(cur);
    }
    Ok(batches)
}

/// What happens to one tensor.
enum Work {
    /// Already on the device.
    Cached,
    /// Expand with a kernel.
    Kernel {
        spec: &'static KernelSpec,
        geometry: BlockGeometry,
        dtype: OutputDType,
    },
    /// Copy the blocks as they are.
    Native,
    /// No kernel by design (float formats): convert on the host, upload.
    HostConvert(OutputDType),
}

struct Job<'a> {
    t: &'a TensorInfo,
    work: Work,
    out: Option<Buffer>,
    failed: Option<GpuError>,
    started: Option<Instant>,
    finished: Option<Instant>,
}

/// Where reader threads get file bytes.
enum Source {
    /// The loader's own mapping.
    Mapped,
    #[cfg(unix)]
    Read(std::fs::File),
}

impl Source {
    fn read(
        &self,
        loader: &GgufLoader,
        t: &TensorInfo,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), LoadError> {
        match self {
            Source::Mapped => {
                let data = loader.file().tensor_data(t);
                let start = offset as usize;
                let src = data
                    .get(start..start + dst.len())
                    .ok_or_else(|| loader.read_err(t, "tensor bytes lie outside the file"))?;
                dst.copy_from_slice(src);
                Ok(())
            }
            #[cfg(unix)]
            Source::Read(f) => {
                use std::os::unix::fs::FileExt;
                let at = loader.file().data_offset() + t.offset + offset;
                f.read_exact_at(dst, at).map_err(|e| {
                    loader.read_err(t, &format!("reading {} bytes at {at}: {e}", dst.len()))
                })
            }
        }
    }
}

/// Loads `tensors` onto `backend` through the ring. Rows come back in the order of `tensors`.
pub(crate) fn run(
    loader: &GgufLoader,
    backend: &dyn Backend,
    tensors: &[&TensorInfo],
    as_: LoadAs,
    opts: &PipelineOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<TensorLoad>, LoadError> {
    let mut jobs = Vec::with_capacity(tensors.len());
    for t in tensors {
        let work = if loader.cached_as(&t.name, as_, backend).is_some() {
            Work::Cached
        } else {
            match as_ {
                LoadAs::Native => Work::Native,
                LoadAs::Values(dtype) => {
                    let format = loader.format_of(t)?;
                    loader.elements(t)?;
                    match format.kernel() {
                        Some(spec) => Work::Kernel {
                            spec,
                            geometry: format.geometry(),
                            dtype,
                        },
                        None => Work::HostConvert(dtype),
                    }
                }
            }
        };
        jobs.push(Job {
            t,
            work,
            out: None,
            failed: None,
            started: None,
            finished: None,
        });
    }

    // Plan; the outputs are allocated while the first batches are read (device memory is the
    // outputs plus the ring).
    let mut sizes = Vec::new();
    let mut shapes = Vec::new();
    let mut piped = Vec::new(); // index into `jobs` of each planned job
    for (i, job) in jobs.iter_mut().enumerate() {
        let (block_bytes, block_multiple, blocks) = match &job.work {
            Work::Kernel {
                geometry, dtype, ..
            } => (
                geometry.block_bytes,
                block_multiple((geometry.block_elems * dtype.size()) as u64),
                job.t.n_elements / geometry.block_elems as u64,
            ),
            Work::Native => {
                let g = job.t.ty.geometry().ok_or_else(|| {
                    loader.read_err(job.t, "the tensor's type has no known block size")
                })?;
                (
                    g.block_bytes,
                    1,
                    job.t.n_elements / g.block_elems.max(1) as u64,
                )
            }
            _ => continue,
        };
        let bytes = usize::try_from(as_.output_bytes(job.t)).map_err(|_| LoadError::TooLarge {
            file: loader.file().path().to_path_buf(),
            tensor: job.t.name.clone(),
            elements: job.t.n_elements,
        })?;
        sizes.push(bytes);
        shapes.push(JobShape {
            blocks,
            block_bytes,
            block_multiple,
        });
        piped.push(i);
    }
    let batches =
        plan_batches(&shapes, opts.slot_bytes.max(1)).map_err(|reason| LoadError::Options {
            file: loader.file().path().to_path_buf(),
            reason,
        })?;

    if batches.is_empty() {
        // Nothing to copy (tensors of no blocks): empty outputs.
        for (k, &j) in piped.iter().enumerate() {
            let job = &mut jobs[j];
            job.out = Some(
                backend
                    .alloc(sizes[k])
                    .map_err(|e| loader.gpu_err(job.t, backend, e))?,
            );
        }
    } else {
        let plan = Plan {
            piped: &piped,
            sizes: &sizes,
            batches: &batches,
        };
        stream_batches(loader, backend, &mut jobs, &plan, opts, progress)?;
    }

    // Kernels that could not run, and the float tensors: on the host, one by one.
    let mut rows = Vec::with_capacity(jobs.len());
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let t = job.t;
        let dtype = as_.tensor_dtype(t);
        let out_bytes = as_.output_bytes(t);
        let (tensor, uploaded, time, path) = match job.work {
            Work::Cached => {
                rows.push(loader.record(t, dtype, 0, 0, Duration::ZERO, LoadPath::Cached));
                continue;
            }
            Work::HostConvert(d) => {
                let t0 = Instant::now();
                let dt =
                    loader.host_convert(t, backend, d, quant_core::cpu::CpuPath::Fast, false)?;
                (dt, out_bytes, t0.elapsed(), LoadPath::HostConvert)
            }
            Work::Kernel { dtype: d, .. } if job.failed.is_some() => {
                let e = job.failed.expect("checked");
                drop(job.out);
                let t0 = Instant::now();
                let (dt, path) = loader.fall_back(t, backend, d, e)?;
                (dt, out_bytes, t0.elapsed(), path)
            }
            Work::Kernel { .. } | Work::Native => {
                let time = match (job.started, job.finished) {
                    (Some(a), Some(b)) => b.duration_since(a),
                    _ => Duration::ZERO,
                };
                let buffer = job.out.expect("allocated above");
                let dt = quant_gpu::DeviceTensor {
                    buffer,
                    shape: t.dims.clone(),
                    dtype,
                };
                let path = if matches!(job.work, Work::Native) {
                    LoadPath::Native
                } else {
                    LoadPath::Kernel
                };
                (dt, t.n_bytes, time, path)
            }
        };
        let produced = if path == LoadPath::Native {
            0
        } else {
            out_bytes
        };
        let row = loader.record(t, dtype, uploaded, produced, time, path);
        done.push((t, tensor));
        rows.push(row);
    }
    for (t, tensor) in done {
        loader.insert_cached(t, as_, backend, tensor);
    }
    for r in &rows {
        progress(&Progress::Tensor(r));
    }
    Ok(rows)
}

/// Time spent in each phase of [`stream_batches`], for `-v` logging.
#[derive(Default, Debug)]
struct Phases {
    reading: Duration,
    waiting_for_reads: Duration,
    waiting_for_outputs: Duration,
    issuing: Duration,
    draining: Duration,
    /// Inside `issuing`: copy-queue waits, copies, compute-queue waits, launches, fences.
    calls: [Duration; 5],
}

/// What [`stream_batches`] streams: the planned jobs (indices into the job list), their output
/// sizes, and the batches.
struct Plan<'p> {
    piped: &'p [usize],
    sizes: &'p [usize],
    batches: &'p [Batch],
}

/// Reads one batch into a host slot (waiting first for the copy that last read the slot).
fn fill(
    loader: &GgufLoader,
    source: &Source,
    tensors: &[&TensorInfo],
    batch: &Batch,
    host: &mut HostBuffer,
) -> Result<(), LoadError> {
    let first = tensors[batch.pieces[0].job];
    let host = host
        .as_mut_slice()
        .map_err(|e| loader.read_err(first, &format!("waiting for a staging slot: {e}")))?;
    for p in &batch.pieces {
        let t = tensors[p.job];
        let block_bytes = p.len as u64 / p.n_blocks.max(1);
        source.read(
            loader,
            t,
            p.first_block * block_bytes,
            &mut host[p.slot_offset..p.slot_offset + p.len],
        )?;
    }
    Ok(())
}

/// The loop over batches, on three kinds of threads:
///
/// * reader threads each take a free host slot (allocating it on first use, so that pinning
///   the ring overlaps the first reads) and the next batch number, and fill the slot;
/// * one allocator thread allocates the outputs, in job order, while the readers start;
/// * this thread issues batches as the readers finish them: copy (after the kernels that last
///   read the device slot), fence, kernels (after the copy), fence; then it hands the host slot
///   back, and the next write to it waits for its copy.
fn stream_batches(
    loader: &GgufLoader,
    backend: &dyn Backend,
    jobs: &mut [Job],
    plan: &Plan,
    opts: &PipelineOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), LoadError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Mutex};

    let Plan {
        piped,
        sizes,
        batches,
    } = *plan;
    let first = jobs[piped[batches[0].pieces[0].job]].t;
    let gpu = |e: GpuError| loader.gpu_err(first, backend, e);
    let mut phases = Phases::default();

    let source = if loader.file().is_mapped() {
        Source::Mapped
    } else {
        #[cfg(unix)]
        {
            let f = std::fs::File::open(loader.file().path())
                .map_err(|e| loader.read_err(first, &format!("opening the file: {e}")))?;
            Source::Read(f)
        }
        #[cfg(not(unix))]
        Source::Mapped
    };

    let kernel_batch: Vec<bool> = batches
        .iter()
        .map(|b| {
            b.pieces
                .iter()
                .any(|p| matches!(jobs[piped[p.job]].work, Work::Kernel { .. }))
        })
        .collect();
    let host_bytes = batches.iter().map(|b| b.used).max().unwrap_or(0);
    let dev_bytes = batches
        .iter()
        .zip(&kernel_batch)
        .filter(|(_, &k)| k)
        .map(|(b, _)| b.used)
        .max()
        .unwrap_or(0);
    let n_slots = opts.ring_slots.max(1).min(batches.len());
    let n_readers = opts.readers.max(1).min(n_slots);
    let mut dev_ring: Vec<(Option<Buffer>, Option<Fence>)> =
        (0..n_slots).map(|_| (None, None)).collect();

    let (free_tx, free_rx) = mpsc::channel::<HostBuffer>();
    let free_rx = Mutex::new(free_rx);
    let allocated = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let read_nanos = AtomicUsize::new(0);
    type Filled = Result<(usize, HostBuffer), LoadError>;
    let (done_tx, done_rx) = mpsc::channel::<Filled>();
    let (out_tx, out_rx) = mpsc::channel::<(usize, Result<Buffer, GpuError>)>();

    // The tensor of each planned job, for the readers (the issuing loop owns `jobs`).
    let tensors: Vec<&TensorInfo> = piped.iter().map(|&j| jobs[j].t).collect();
    let tensors = &tensors[..];
    // Times each job was first read and last issued, filled in by the issuing loop below.
    let mut started = vec![None::<Instant>; jobs.len()];
    let mut finished = vec![None::<Instant>; jobs.len()];

    let result = std::thread::scope(|s| -> Result<(), LoadError> {
        let spawn_err =
            |e: std::io::Error| loader.read_err(first, &format!("starting a thread: {e}"));
        for r in 0..n_readers {
            let (free_rx, next, abort, done_tx, source, read_nanos, allocated) = (
                &free_rx,
                &next,
                &abort,
                done_tx.clone(),
                &source,
                &read_nanos,
                &allocated,
            );
            std::thread::Builder::new()
                .name(format!("qf-reader-{r}"))
                .spawn_scoped(s, move || loop {
                    let slot = {
                        let Ok(rx) = free_rx.lock() else { return };
                        match rx.try_recv() {
                            Ok(slot) => slot,
                            Err(mpsc::TryRecvError::Disconnected) => return,
                            Err(_) if allocated.fetch_add(1, Ordering::SeqCst) < n_slots => {
                                drop(rx);
                                match backend.alloc_host(host_bytes) {
                                    Ok(h) => h,
                                    Err(e) => {
                                        let _ =
                                            done_tx.send(Err(loader.gpu_err(first, backend, e)));
                                        return;
                                    }
                                }
                            }
                            Err(_) => match rx.recv() {
                                Ok(slot) => slot,
                                Err(_) => return,
                            },
                        }
                    };
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= batches.len() || abort.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut slot = slot;
                    let t = Instant::now();
                    // A mapped file that shrank would raise SIGBUS on the lost pages; ordinary
                    // reads report a short file themselves.
                    let unchanged = match source {
                        Source::Mapped => loader.check_unchanged(),
                        #[cfg(unix)]
                        Source::Read(_) => Ok(()),
                    };
                    let res = unchanged
                        .and_then(|()| fill(loader, source, tensors, &batches[i], &mut slot));
                    read_nanos.fetch_add(t.elapsed().as_nanos() as usize, Ordering::Relaxed);
                    if done_tx.send(res.map(|()| (i, slot))).is_err() {
                        return;
                    }
                })
                .map_err(spawn_err)?;
        }
        drop(done_tx);
        {
            let abort = &abort;
            std::thread::Builder::new()
                .name("qf-alloc".into())
                .spawn_scoped(s, move || {
                    for (k, &bytes) in sizes.iter().enumerate() {
                        if abort.load(Ordering::SeqCst) {
                            return;
                        }
                        let r = backend.alloc(bytes);
                        let failed = r.is_err();
                        if out_tx.send((k, r)).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(spawn_err)?;
        }

        // Issue batches as the readers finish them.
        let (jobs, started, finished) = (&mut *jobs, &mut started, &mut finished);
        let (phases, dev_ring, progress) = (&mut phases, &mut dev_ring, &mut *progress);
        let issue = move || -> Result<(), LoadError> {
            let (done_rx, out_rx) = (done_rx, out_rx);
            let mut outputs_in = 0usize;
            let mut take_output = |k: usize, jobs: &mut [Job]| -> Result<(), LoadError> {
                while outputs_in <= k {
                    let (kk, r) = out_rx.recv().map_err(|_| {
                        loader.read_err(first, "the allocator thread stopped early")
                    })?;
                    let job = &mut jobs[piped[kk]];
                    job.out = Some(r.map_err(|e| loader.gpu_err(job.t, backend, e))?);
                    outputs_in = kk + 1;
                }
                Ok(())
            };
            // Batches are independent (each writes its own output ranges), so they are issued
            // in the order the readers finish them: a slow read holds up nothing but itself.
            // Device slots follow the issue order.
            for seq in 0..batches.len() {
                let tw = Instant::now();
                let (i, mut host) = done_rx
                    .recv()
                    .map_err(|_| loader.read_err(first, "the reader threads stopped early"))??;
                let batch = &batches[i];
                phases.waiting_for_reads += tw.elapsed();
                let to = Instant::now();
                take_output(
                    batch.pieces.last().expect("batches are not empty").job,
                    jobs,
                )?;
                phases.waiting_for_outputs += to.elapsed();
                let ti = Instant::now();
                for p in &batch.pieces {
                    started[piped[p.job]].get_or_insert(tw);
                }
                let slot = seq % n_slots;
                if kernel_batch[i] {
                    let (dev, kernels_done) = &mut dev_ring[slot];
                    if dev.is_none() {
                        *dev = Some(backend.alloc(dev_bytes).map_err(gpu)?);
                    }
                    let dev = dev.as_mut().expect("just allocated");
                    if let Some(f) = kernels_done.take() {
                        let tc = Instant::now();
                        backend.wait_fence(Queue::Copy, &f).map_err(gpu)?;
                        phases.calls[0] += tc.elapsed();
                    }
                    let tc = Instant::now();
                    backend
                        .upload_async(Queue::Copy, &mut host, 0..batch.used, dev, 0)
                        .map_err(gpu)?;
                    phases.calls[1] += tc.elapsed();
                    // Kernels wait for the copy: for the fence the copy left on the host slot
                    // (a backend that copied synchronously left none, and none is needed).
                    if let Some(copied) = host.pending() {
                        let tc = Instant::now();
                        backend.wait_fence(Queue::Compute, copied).map_err(gpu)?;
                        phases.calls[2] += tc.elapsed();
                    }
                }
                for p in &batch.pieces {
                    let j = piped[p.job];
                    let job = &mut jobs[j];
                    match job.work {
                        Work::Kernel {
                            spec,
                            geometry,
                            dtype,
                        } => {
                            if job.failed.is_some() {
                                continue;
                            }
                            let dev = dev_ring[slot].0.as_ref().expect("allocated above");
                            let out = job.out.as_mut().expect("taken above");
                            let dst_offset =
                                p.first_block as usize * geometry.block_elems * dtype.size();
                            let tc = Instant::now();
                            let launched = backend.dequantize_at(
                                spec,
                                geometry.block_elems,
                                dev,
                                p.slot_offset,
                                p.n_blocks,
                                out,
                                dst_offset,
                                dtype,
                            );
                            phases.calls[3] += tc.elapsed();
                            match launched {
                                Ok(()) => {}
                                Err(e) if is_kernel_failure(&e) => job.failed = Some(e),
                                Err(e) => return Err(loader.gpu_err(job.t, backend, e)),
                            }
                        }
                        Work::Native => {
                            let out = job.out.as_mut().expect("taken above");
                            let block_bytes = p.len as u64 / p.n_blocks.max(1);
                            let dst_offset = (p.first_block * block_bytes) as usize;
                            backend
                                .upload_async(
                                    Queue::Copy,
                                    &mut host,
                                    p.slot_offset..p.slot_offset + p.len,
                                    out,
                                    dst_offset,
                                )
                                .map_err(|e| loader.gpu_err(job.t, backend, e))?;
                        }
                        _ => unreachable!("only kernel and native jobs are planned"),
                    }
                }
                if kernel_batch[i] {
                    let tc = Instant::now();
                    dev_ring[slot].1 = Some(backend.record(Queue::Compute).map_err(gpu)?);
                    phases.calls[4] += tc.elapsed();
                }
                let now = Instant::now();
                for p in &batch.pieces {
                    finished[piped[p.job]] = Some(now);
                }
                // Back to the readers; their next write waits for this slot's copy.
                let _ = free_tx.send(host);
                phases.issuing += ti.elapsed();
                progress(&Progress::Bytes(
                    batch.pieces.iter().map(|p| p.len as u64).sum(),
                ));
            }
            // Outputs of trailing jobs without blocks.
            if !sizes.is_empty() {
                take_output(sizes.len() - 1, jobs)?;
            }
            Ok(())
        };
        let r = issue();
        if r.is_err() {
            abort.store(true, Ordering::SeqCst);
        }
        r
    });
    for (j, job) in jobs.iter_mut().enumerate() {
        job.started = started[j];
        job.finished = finished[j];
    }
    result?;

    // Drain both queues.
    let td = Instant::now();
    let copies = backend.record(Queue::Copy).map_err(gpu)?;
    copies.wait().map_err(gpu)?;
    backend.synchronize().map_err(gpu)?;
    phases.draining = td.elapsed();
    phases.reading = Duration::from_nanos(read_nanos.load(Ordering::Relaxed) as u64);
    tracing::info!(
        device = %crate::device_label(backend),
        batches = batches.len(),
        slots = n_slots,
        readers = n_readers,
        "pipeline phases: reading {:?} (summed over readers), waiting for reads {:?}, \
         waiting for outputs {:?}, issuing {:?} (copy waits {:?}, copies {:?}, compute waits \
         {:?}, launches {:?}, fences {:?}), draining {:?}",
        phases.reading,
        phases.waiting_for_reads,
        phases.waiting_for_outputs,
        phases.issuing,
        phases.calls[0],
        phases.calls[1],
        phases.calls[2],
        phases.calls[3],
        phases.calls[4],
        phases.draining
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(blocks: u64, block_bytes: usize, m: u64) -> JobShape {
        JobShape {
            blocks,
            block_bytes,
            block_multiple: m,
        }
    }

    /// Every block of every job appears exactly once, in order, inside its slot.
    fn check(jobs: &[JobShape], slot: usize, batches: &[Batch]) {
        let mut next = vec![0u64; jobs.len()];
        let mut last_job = 0;
        for b in batches {
            assert!(b.used <= slot);
            let mut end = 0;
            for p in &b.pieces {
                assert!(p.job >= last_job, "jobs stay in order");
                last_job = p.job;
                assert_eq!(p.slot_offset % ALIGN, 0);
                assert!(p.slot_offset >= end, "pieces do not overlap");
                assert_eq!(p.first_block, next[p.job], "blocks in order");
                assert_eq!(p.len, p.n_blocks as usize * jobs[p.job].block_bytes);
                next[p.job] += p.n_blocks;
                if next[p.job] < jobs[p.job].blocks {
                    assert_eq!(p.n_blocks % jobs[p.job].block_multiple, 0);
                }
                end = p.slot_offset + p.len;
            }
            assert_eq!(b.used, end);
        }
        for (j, s) in jobs.iter().enumerate() {
            assert_eq!(next[j], s.blocks, "job {j} complete");
        }
    }

    #[test]
    fn large_tensors_are_split_and_small_ones_share_a_slot() {
        let jobs = [
            shape(3, 144, 1),
            shape(2, 210, 1),
            shape(100, 144, 1),
            shape(1, 144, 1),
        ];
        let b = plan_batches(&jobs, 1024).unwrap();
        check(&jobs, 1024, &b);
        // The two small tensors share the first slot.
        assert_eq!(b[0].pieces[0].job, 0);
        assert_eq!(b[0].pieces[1].job, 1);
        assert_eq!(b[0].pieces[1].slot_offset, 512);
        // The large one spans many slots.
        assert!(
            b.iter()
                .filter(|b| b.pieces.iter().any(|p| p.job == 2))
                .count()
                >= 14
        );
    }

    #[test]
    fn block_multiples_keep_outputs_aligned() {
        // Q4_0 to f16: 32 values * 2 bytes = 64 output bytes per block -> multiples of 4.
        assert_eq!(block_multiple(64), 4);
        assert_eq!(block_multiple(512), 1);
        assert_eq!(block_multiple(1), 256);
        let jobs = [shape(1, 18, 4), shape(103, 18, 4)];
        let b = plan_batches(&jobs, 300).unwrap();
        check(&jobs, 300, &b);
    }

    #[test]
    fn a_slot_smaller_than_a_block_is_an_error() {
        let e = plan_batches(&[shape(4, 210, 1)], 200).unwrap_err();
        assert!(e.contains("200 bytes") && e.contains("210"), "{e}");
        assert!(plan_batches(&[], 16).unwrap().is_empty());
        assert!(plan_batches(&[shape(0, 144, 1)], 1024).unwrap().is_empty());
    }

    #[test]
    fn load_as_and_strategy_parse_their_cli_spellings() {
        assert_eq!(LoadAs::from_name("native"), Some(LoadAs::Native));
        assert_eq!(
            LoadAs::from_name("BF16"),
            Some(LoadAs::Values(OutputDType::Bf16))
        );
        assert_eq!(LoadAs::from_name("q4"), None);
        assert_eq!(
            Strategy::from_name("cpu-dequant"),
            Some(Strategy::CpuDequant)
        );
        assert_eq!(Strategy::from_name("fast"), None);
    }
}
