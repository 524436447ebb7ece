//! Pipelined whole-model loading, written once on top of the [`Backend`] primitives.
//!
//! ```text
//!  reader thread r, its slot s:  fill host slot (pinned) from the file
//!                                   │ copy queue: H2D into the slot's device memory
//!                                   │ fence
//!                                   ▼
//!                                compute queue: kernels read the slot at offsets, write outputs
//!                                   │ fence (the slot's device memory free again)
//! ```
//!
//! Tensors are cut into [`Piece`]s of whole blocks and packed into slot-sized [`Batch`]es (a
//! large tensor spans several batches, many small ones share one). Each reader thread owns a
//! few ring slots; it takes the next batch number, fills one of its slots from the file and
//! issues the batch itself. Batches are independent (each writes its own ranges of its
//! tensors' outputs), so the order in which readers issue them does not matter. Before a reader
//! overwrites a host slot, [`HostBuffer::as_mut_slice`] waits for the copy that last read it;
//! before it queues a copy into the slot's device memory, it waits (on the host: they are all
//! but always done, and a wait in the copy queue would hold up every later copy) for the
//! kernels that last read it; kernels wait (on the device) for the copy of their batch. So
//! reading, copying and dequantizing overlap, and host memory beyond the page cache is the
//! ring, whatever the model's size.
//!
//! With [`LoadAs::Native`] the blocks are copied straight from the host slot into the output
//! buffers, and no kernel runs; so are integer tensors' bytes whatever the load asks for
//! ([`LoadPath::Kept`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

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

    /// Bytes a tensor occupies on the device when loaded this way (an integer tensor is kept
    /// as it is: its bytes in the file).
    pub fn output_bytes(self, t: &TensorInfo) -> u64 {
        match self {
            LoadAs::Values(d) if !t.ty.is_integer() => t.n_elements.saturating_mul(d.size() as u64),
            _ => t.n_bytes,
        }
    }

    /// What the device tensor of `t` holds when loaded this way: values of the asked type, or
    /// the file's bytes ([`TensorDType::Native`]) with [`LoadAs::Native`] and for an integer
    /// tensor, which is always kept as it is.
    pub fn tensor_dtype(self, t: &TensorInfo) -> TensorDType {
        match self {
            LoadAs::Values(d) if !t.ty.is_integer() => TensorDType::Values(d),
            _ => TensorDType::Native(t.ty),
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
    /// Ring slots in all (at least 1), shared out among the readers; there are at most as many
    /// readers as slots. Two slots per reader let it fill one while the other's copy is in
    /// flight.
    pub ring_slots: usize,
    /// Bytes per ring slot, host and device. A slot must hold at least one block.
    pub slot_bytes: usize,
    /// Reader threads, each filling its own slots from the file and issuing them.
    pub readers: usize,
    /// Fill host slots with positioned reads (`pread`) of the file even when it is mapped,
    /// instead of copying out of the mapping. A file opened without a mapping is always read
    /// this way.
    pub direct_reads: bool,
}

impl Default for PipelineOptions {
    /// Readers on half the cores (at most 8: the copy engine needs host memory bandwidth too,
    /// and the allocator and progress threads a core), two slots of 2 MiB each (a copy of
    /// 2 MiB takes about 38 us at 55 GB/s, well above the cost of issuing it). On an H200
    /// host these were the fastest of the settings tried (docs/performance.md).
    fn default() -> Self {
        let readers = std::thread::available_parallelism()
            .map(|n| (n.get() / 2).clamp(1, 8))
            .unwrap_or(4);
        PipelineOptions {
            strategy: Strategy::Pipelined,
            ring_slots: 2 * readers,
            slot_bytes: 2 << 20,
            readers,
            direct_reads: false,
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
    /// Byte offset of the run inside the tensor's data (`first_block` times the block size).
    pub tensor_offset: u64,
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
                tensor_offset: done * bb,
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
#[derive(Clone, Copy)]
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
    /// An integer tensor, asked for as values: copy its bytes as they are.
    Kept,
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
    /// The loader's own mapping (a copy out of it).
    Mapped,
    /// The loader's unmapped file: positioned reads through the `GgufFile`, which keeps the
    /// file open ([`quant_gguf::GgufFile::read_tensor_at`]).
    Unmapped,
    /// `direct_reads` on a mapped file: positioned reads of a separately opened `File`.
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
            Source::Mapped | Source::Unmapped => {
                Ok(loader.file().read_tensor_at(t, offset, dst)?)
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
                LoadAs::Values(_) if t.ty.is_integer() => Work::Kept,
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
            Work::Native | Work::Kept => {
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
                // The float tensors (no kernel by design): small but many. Converting them on
                // a thread beside the stream was tried: its uploads' driver calls and stream
                // synchronizations held the readers up more than it saved.
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
            Work::Kernel { .. } | Work::Native | Work::Kept => {
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
                let path = match job.work {
                    Work::Native => LoadPath::Native,
                    Work::Kept => LoadPath::Kept,
                    _ => LoadPath::Kernel,
                };
                (dt, t.n_bytes, time, path)
            }
        };
        let produced = if matches!(path, LoadPath::Native | LoadPath::Kept) {
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

/// Time spent in each phase of [`stream_batches`], summed over readers, for `-v` logging.
#[derive(Default, Debug)]
struct Phases {
    /// Waiting for a slot's last copy before overwriting it.
    slot_waits: Duration,
    /// Filling slots from the file.
    reading: Duration,
    /// Waiting for the allocator thread's outputs.
    output_waits: Duration,
    /// Queueing copies, waits, kernels and fences.
    issuing: Duration,
    /// Since the stream started: the first batch issued, the last, the queues drained.
    first_issue: Duration,
    last_issue: Duration,
    drained: Duration,
}

/// Counters behind [`Phases`], shared by the reader threads (nanoseconds).
#[derive(Default)]
struct PhaseCounters {
    slot_waits: AtomicU64,
    reading: AtomicU64,
    output_waits: AtomicU64,
    issuing: AtomicU64,
    first_issue: AtomicU64,
}

impl PhaseCounters {
    fn add(counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

fn nanos(n: &AtomicU64) -> Duration {
    Duration::from_nanos(n.load(Ordering::Relaxed))
}

/// What [`stream_batches`] streams: the planned jobs (indices into the job list), their output
/// sizes, and the batches.
struct Plan<'p> {
    piped: &'p [usize],
    sizes: &'p [usize],
    batches: &'p [Batch],
}

/// Reads one batch into a host slot whose last copy has finished.
fn fill(
    loader: &GgufLoader,
    source: &Source,
    tensors: &[&TensorInfo],
    batch: &Batch,
    host: &mut [u8],
) -> Result<(), LoadError> {
    // A mapped file that shrank would raise SIGBUS on the lost pages; ordinary reads report a
    // short file themselves.
    if let Source::Mapped = source {
        loader.check_unchanged()?;
    }
    for p in &batch.pieces {
        let t = tensors[p.job];
        source.read(
            loader,
            t,
            p.tensor_offset,
            &mut host[p.slot_offset..p.slot_offset + p.len],
        )?;
    }
    Ok(())
}

/// One reader's ring slot: pinned host memory, and for batches with kernels the device memory
/// they read and the fence after the last kernels that read it.
struct Slot {
    host: HostBuffer,
    dev: Option<Buffer>,
    kernels_done: Option<Fence>,
}

/// One planned job's output as the readers share it.
#[derive(Default)]
struct Output {
    buffer: Option<Buffer>,
    /// A kernel that could not run: the tensor falls back after the stream.
    failed: Option<GpuError>,
}

/// State the reader threads and the allocator thread share.
struct Shared {
    outputs: Vec<Mutex<Output>>,
    /// Outputs allocated so far (in job order), under a lock the readers wait on.
    allocated: Mutex<usize>,
    allocated_cv: Condvar,
    /// Set on the first error; everyone stops at the next batch.
    abort: AtomicBool,
    error: Mutex<Option<LoadError>>,
    /// Per planned job, nanoseconds since the start (plus one; 0: never) when its first batch
    /// was taken and its last batch issued.
    started: Vec<AtomicU64>,
    finished: Vec<AtomicU64>,
    phases: PhaseCounters,
    t_start: Instant,
}

impl Shared {
    fn fail(&self, e: LoadError) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(e);
        }
        self.abort.store(true, Ordering::SeqCst);
        // Wake readers waiting for outputs.
        let _guard = self.allocated.lock();
        self.allocated_cv.notify_all();
    }

    fn since_start(&self) -> u64 {
        self.t_start.elapsed().as_nanos() as u64 + 1
    }

    /// Waits until the outputs of planned jobs `0..=k` exist. `false` if the load aborted.
    fn wait_for_output(&self, k: usize) -> bool {
        let mut n = self.allocated.lock();
        while *n <= k {
            if self.abort.load(Ordering::SeqCst) {
                return false;
            }
            self.allocated_cv.wait(&mut n);
        }
        true
    }
}

/// How a planned job's pieces are issued.
#[derive(Clone, Copy)]
enum PieceWork {
    Kernel {
        spec: &'static KernelSpec,
        geometry: BlockGeometry,
        dtype: OutputDType,
    },
    Native,
}

/// Streams the batches through the ring, on two kinds of threads:
///
/// * reader threads each own a few ring slots (pinned on first use, on the reader's thread, so
///   that pinning overlaps the first reads), take the next batch number, wait for the slot's
///   last copy, fill it from the file and issue the batch themselves: copy (after the kernels
///   that last read the slot's device memory, waited for on the host), kernels (after the
///   copy), fence. No batch waits for a hand-off to another thread, and a slot stays with the
///   core that writes it.
/// * one allocator thread allocates the outputs, in job order, while the readers start.
///
/// Batches are independent (each writes its own ranges of its tensors' outputs), so their order
/// on the queues does not matter; a kernel waits for a fence recorded after its batch's copy,
/// which covers that copy whatever was queued in between.
fn stream_batches(
    loader: &GgufLoader,
    backend: &dyn Backend,
    jobs: &mut [Job],
    plan: &Plan,
    opts: &PipelineOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), LoadError> {
    let Plan {
        piped,
        sizes,
        batches,
    } = *plan;
    let first = jobs[piped[batches[0].pieces[0].job]].t;
    let gpu = |e: GpuError| loader.gpu_err(first, backend, e);

    let source = if !loader.file().is_mapped() {
        Source::Unmapped
    } else if !opts.direct_reads {
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

    // What each planned job's pieces do, and which tensor they read.
    let work: Vec<PieceWork> = piped
        .iter()
        .map(|&j| match jobs[j].work {
            Work::Kernel {
                spec,
                geometry,
                dtype,
            } => PieceWork::Kernel {
                spec,
                geometry,
                dtype,
            },
            _ => PieceWork::Native,
        })
        .collect();
    let tensors: Vec<&TensorInfo> = piped.iter().map(|&j| jobs[j].t).collect();
    let tensors = &tensors[..];
    let kernel_batch = |b: &Batch| {
        b.pieces
            .iter()
            .any(|p| matches!(work[p.job], PieceWork::Kernel { .. }))
    };
    let host_bytes = batches.iter().map(|b| b.used).max().unwrap_or(0);
    let dev_bytes = batches
        .iter()
        .filter(|b| kernel_batch(b))
        .map(|b| b.used)
        .max()
        .unwrap_or(0);
    // At most one reader per slot, so that the ring stays within `ring_slots`.
    let n_slots = opts.ring_slots.max(1);
    let n_readers = opts.readers.max(1).min(n_slots).min(batches.len());
    let per_reader = n_slots / n_readers;

    let phases = PhaseCounters::default();
    phases.first_issue.store(u64::MAX, Ordering::Relaxed);
    let shared = Shared {
        outputs: (0..sizes.len()).map(|_| Mutex::default()).collect(),
        allocated: Mutex::new(0),
        allocated_cv: Condvar::new(),
        abort: AtomicBool::new(false),
        error: Mutex::new(None),
        started: (0..sizes.len()).map(|_| AtomicU64::new(u64::MAX)).collect(),
        finished: (0..sizes.len()).map(|_| AtomicU64::new(0)).collect(),
        phases,
        t_start: Instant::now(),
    };
    let next = AtomicUsize::new(0);
    let (bytes_tx, bytes_rx) = mpsc::channel::<u64>();

    // Issues batch `i` from `slot` (filled): see `stream_batches`.
    let issue = |i: usize, slot: &mut Slot| -> Result<(), LoadError> {
        let batch = &batches[i];
        let t = Instant::now();
        let last_job = batch.pieces.last().expect("batches are not empty").job;
        if !shared.wait_for_output(last_job) {
            return Ok(()); // aborted; the error is already recorded
        }
        PhaseCounters::add(&shared.phases.output_waits, t);
        let t = Instant::now();
        shared
            .phases
            .first_issue
            .fetch_min(shared.since_start(), Ordering::Relaxed);
        if kernel_batch(batch) {
            if slot.dev.is_none() {
                slot.dev = Some(backend.alloc(dev_bytes).map_err(gpu)?);
            }
            let dev = slot.dev.as_mut().expect("just allocated");
            // The kernels that last read this device memory were queued two of this reader's
            // batches ago and are all but always done: wait for them here, on the host, rather
            // than with a wait in the copy queue, which would hold up every copy behind it.
            if let Some(f) = slot.kernels_done.take() {
                f.wait().map_err(gpu)?;
            }
            backend
                .upload_async(Queue::Copy, &mut slot.host, 0..batch.used, dev, 0)
                .map_err(gpu)?;
            // Kernels wait for the fence the copy left on the host slot (a backend that
            // copied synchronously left none, and none is needed).
            if let Some(copied) = slot.host.pending() {
                backend.wait_fence(Queue::Compute, copied).map_err(gpu)?;
            }
        }
        for p in &batch.pieces {
            let tensor = tensors[p.job];
            let mut out = shared.outputs[p.job].lock();
            let Output { buffer, failed } = &mut *out;
            let buffer = buffer.as_mut().expect("waited for above");
            match work[p.job] {
                PieceWork::Kernel {
                    spec,
                    geometry,
                    dtype,
                } => {
                    if failed.is_some() {
                        continue;
                    }
                    let dev = slot.dev.as_ref().expect("allocated above");
                    let dst_offset = p.first_block as usize * geometry.block_elems * dtype.size();
                    match backend.dequantize_at(
                        spec,
                        dev,
                        p.slot_offset,
                        p.n_blocks,
                        buffer,
                        dst_offset,
                        dtype,
                    ) {
                        Ok(()) => {}
                        Err(e) if is_kernel_failure(&e) => *failed = Some(e),
                        Err(e) => return Err(loader.gpu_err(tensor, backend, e)),
                    }
                }
                PieceWork::Native => {
                    let dst_offset = p.tensor_offset as usize;
                    backend
                        .upload_async(
                            Queue::Copy,
                            &mut slot.host,
                            p.slot_offset..p.slot_offset + p.len,
                            buffer,
                            dst_offset,
                        )
                        .map_err(|e| loader.gpu_err(tensor, backend, e))?;
                }
            }
        }
        if kernel_batch(batch) {
            slot.kernels_done = Some(backend.record(Queue::Compute).map_err(gpu)?);
        }
        let now = shared.since_start();
        for p in &batch.pieces {
            shared.finished[p.job].fetch_max(now, Ordering::Relaxed);
        }
        PhaseCounters::add(&shared.phases.issuing, t);
        Ok(())
    };

    // One reader: returns its slots, to be freed once the queues are drained.
    let reader = |bytes_tx: mpsc::Sender<u64>| -> Result<Vec<Slot>, LoadError> {
        let mut ring: Vec<Slot> = Vec::with_capacity(per_reader);
        let mut k = 0;
        loop {
            if shared.abort.load(Ordering::SeqCst) {
                return Ok(ring);
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= batches.len() {
                return Ok(ring);
            }
            let batch = &batches[i];
            let taken = shared.since_start();
            for p in &batch.pieces {
                shared.started[p.job].fetch_min(taken, Ordering::Relaxed);
            }
            if ring.len() == k {
                let host = backend.alloc_host(host_bytes).map_err(gpu)?;
                ring.push(Slot {
                    host,
                    dev: None,
                    kernels_done: None,
                });
            }
            let slot = &mut ring[k];
            k = (k + 1) % per_reader;
            let t = Instant::now();
            let bytes = slot
                .host
                .as_mut_slice()
                .map_err(|e| loader.read_err(first, &format!("waiting for a staging slot: {e}")))?;
            PhaseCounters::add(&shared.phases.slot_waits, t);
            let t = Instant::now();
            fill(loader, &source, tensors, batch, bytes)?;
            PhaseCounters::add(&shared.phases.reading, t);
            issue(i, slot)?;
            let _ = bytes_tx.send(batch.pieces.iter().map(|p| p.len as u64).sum());
        }
    };

    let rings = std::thread::scope(|s| -> Result<Vec<Vec<Slot>>, LoadError> {
        let spawn_err =
            |e: std::io::Error| loader.read_err(first, &format!("starting a thread: {e}"));
        let shared = &shared;
        std::thread::Builder::new()
            .name("qf-alloc".into())
            .spawn_scoped(s, move || {
                for (k, &bytes) in sizes.iter().enumerate() {
                    if shared.abort.load(Ordering::SeqCst) {
                        return;
                    }
                    match backend.alloc(bytes) {
                        Ok(b) => {
                            shared.outputs[k].lock().buffer = Some(b);
                            *shared.allocated.lock() = k + 1;
                            shared.allocated_cv.notify_all();
                        }
                        Err(e) => return shared.fail(loader.gpu_err(tensors[k], backend, e)),
                    }
                }
            })
            .map_err(spawn_err)?;
        let mut handles = Vec::with_capacity(n_readers);
        for r in 0..n_readers {
            let (reader, bytes_tx) = (&reader, bytes_tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("qf-reader-{r}"))
                .spawn_scoped(s, move || {
                    reader(bytes_tx).map_err(|e| {
                        shared.fail(e);
                    })
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shared.fail(spawn_err(e));
                    break;
                }
            }
        }
        drop(bytes_tx);
        // Progress, on this thread, as the readers issue batches.
        for n in bytes_rx {
            progress(&Progress::Bytes(n));
        }
        let mut rings = Vec::with_capacity(handles.len());
        for h in handles {
            match h.join() {
                Ok(Ok(ring)) => rings.push(ring),
                Ok(Err(())) => {} // recorded in `shared.error`
                Err(_) => shared.fail(loader.read_err(first, "a reader thread panicked")),
            }
        }
        Ok(rings)
    })?;

    let mut phases = Phases {
        slot_waits: nanos(&shared.phases.slot_waits),
        reading: nanos(&shared.phases.reading),
        output_waits: nanos(&shared.phases.output_waits),
        issuing: nanos(&shared.phases.issuing),
        first_issue: nanos(&shared.phases.first_issue),
        last_issue: shared.t_start.elapsed(),
        drained: Duration::ZERO,
    };
    if let Some(e) = shared.error.into_inner() {
        // Let queued work finish before the rings' memory goes.
        let _ = backend.synchronize();
        return Err(e);
    }
    let at =
        |n: u64| (n != 0 && n != u64::MAX).then(|| shared.t_start + Duration::from_nanos(n - 1));
    for (k, out) in shared.outputs.into_iter().enumerate() {
        let job = &mut jobs[piped[k]];
        let Output { buffer, failed } = out.into_inner();
        job.out = buffer;
        job.failed = failed;
        job.started = at(shared.started[k].load(Ordering::Relaxed));
        job.finished = at(shared.finished[k].load(Ordering::Relaxed));
    }

    // Drain both queues, then free the rings.
    let copies = backend.record(Queue::Copy).map_err(gpu)?;
    copies.wait().map_err(gpu)?;
    backend.synchronize().map_err(gpu)?;
    phases.drained = shared.t_start.elapsed();
    drop(rings);
    tracing::info!(
        device = %crate::device_label(backend),
        batches = batches.len(),
        readers = n_readers,
        slots_per_reader = per_reader,
        "pipeline phases, summed over readers: waiting for a slot's last copy {:?}, reading {:?}, \
         waiting for outputs {:?}, issuing {:?}; since the start: first batch issued {:?}, \
         last {:?}, drained {:?}, ring freed {:?}",
        phases.slot_waits,
        phases.reading,
        phases.output_waits,
        phases.issuing,
        phases.first_issue,
        phases.last_issue,
        phases.drained,
        shared.t_start.elapsed(),
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
                assert_eq!(
                    p.tensor_offset,
                    p.first_block * jobs[p.job].block_bytes as u64
                );
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
