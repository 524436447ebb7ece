//! The planner: the one place that decides what loading a tensor (or a region of one) takes.
//!
//! [`plan`] looks at a tensor's type and shape, the requested output ([`LoadAs`]), the region
//! and where the work happens ([`Target`]), and returns a [`TensorPlan`]: the [`Work`] (a
//! kernel with its spec and output type, a copy of blocks, or a conversion on the host), the
//! bytes of the tensor's data to read ([`Spans`], whole blocks), the output's shape, type and
//! size, and for a column range that cuts blocks the [`Trim`] that cuts the expanded rows.
//! Only this module asks whether a type is an integer type or whether a format has a kernel;
//! executors carry out plans and never decide.
//!
//! `plan_batches` packs the pieces of planned tensors into the pipeline's ring slots.

use std::ops::Range;

use quant_core::{BlockGeometry, GgmlType, KernelSpec, OutputDType, QuantFormat};
use quant_gpu::TensorDType;

use crate::options::LoadAs;
use crate::report::LoadPath;

/// Offsets of pieces inside a ring slot, and of kernel outputs, are multiples of this.
pub const ALIGN: usize = 256;

/// A part of a tensor in PyTorch's terms: `rows` of its 2-D view `(rows, ne0)`, where a row is
/// ggml's first dimension (`ne0` values, stored as whole blocks) and the rows run over all
/// further dimensions; `cols` are elements within each row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Rows, half-open.
    pub rows: Range<u64>,
    /// Elements of each row, half-open.
    pub cols: Range<u64>,
}

impl Region {
    /// The whole of a tensor of dimensions `dims` (ggml order).
    pub fn whole(dims: &[u64]) -> Region {
        let (ne0, rows) = row_view(dims);
        Region {
            rows: 0..rows,
            cols: 0..ne0,
        }
    }
}

/// `(ne0, rows)`: a tensor's values per row and its number of rows.
fn row_view(dims: &[u64]) -> (u64, u64) {
    let ne0 = dims.first().copied().unwrap_or(1);
    let rows = dims.iter().skip(1).fold(1u64, |a, &d| a.saturating_mul(d));
    (ne0, rows)
}

/// Where a plan is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Onto a device, with the format's kernel where it has one.
    Device,
    /// Onto a device by the baseline: values made on the host, uploaded from pageable memory.
    Baseline,
    /// Into host memory.
    Host,
    /// Into device memory the caller owns: values only (an integer tensor cannot be kept
    /// there, since the caller sized it for values).
    Caller,
    /// From blocks already on the device into device memory: a kernel or nothing.
    DeviceBlocks,
}

/// Why values are made on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostWhy {
    /// The format has no kernel by design (the plain float types).
    NoKernel,
    /// The baseline strategy asked for it.
    Baseline,
    /// There is no device: the load goes to host memory.
    NoDevice,
}

/// What a tensor needs.
#[derive(Clone, Copy)]
pub enum Work {
    /// Expand on the device with the format's kernel.
    Kernel {
        /// The format (for a fallback to its CPU reference).
        format: &'static dyn QuantFormat,
        /// Its kernel.
        spec: &'static KernelSpec,
        /// The output type.
        dtype: OutputDType,
    },
    /// Move the bytes as they are: the native blocks, or an integer tensor kept.
    Copy {
        /// An integer tensor kept as it is, rather than native blocks that were asked for.
        kept: bool,
    },
    /// Dequantize on the host with the format's fast path and round to `dtype`.
    Host {
        /// The format.
        format: &'static dyn QuantFormat,
        /// The output type.
        dtype: OutputDType,
        /// Why on the host.
        why: HostWhy,
    },
}

impl Work {
    /// The report's name for this work when it succeeds.
    pub fn path(&self) -> LoadPath {
        match self {
            Work::Kernel { .. } => LoadPath::Kernel,
            Work::Copy { kept: true } => LoadPath::Kept,
            Work::Copy { kept: false } => LoadPath::Native,
            Work::Host { why, .. } => match why {
                HostWhy::NoKernel => LoadPath::HostConvert,
                HostWhy::Baseline => LoadPath::CpuDequant,
                HostWhy::NoDevice => LoadPath::Cpu,
            },
        }
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Kernel { format, dtype, .. } => write!(f, "Kernel({} -> {dtype})", format.name()),
            Work::Copy { kept } => write!(f, "Copy {{ kept: {kept} }}"),
            Work::Host { format, dtype, why } => {
                write!(f, "Host({} -> {dtype}, {why:?})", format.name())
            }
        }
    }
}

/// Byte ranges of a tensor's data, each whole blocks: `count` ranges of `len` bytes, the first
/// at `first`, each `stride` bytes after the one before. Read one after another they are the
/// blocks the work consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spans {
    /// Offset of the first range in the tensor's data.
    pub first: u64,
    /// Bytes per range.
    pub len: u64,
    /// Distance between the starts of two ranges.
    pub stride: u64,
    /// Number of ranges.
    pub count: u64,
}

impl Spans {
    /// Bytes in all.
    pub fn total(&self) -> u64 {
        self.len * self.count
    }

    /// The pieces of the tensor's data behind bytes `at..at + len` of the spans read one after
    /// another: `(offset in the tensor's data, length)`, in order.
    pub fn segments(&self, at: u64, len: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let end = at + len;
        let mut pos = at;
        std::iter::from_fn(move || {
            if pos >= end || self.len == 0 {
                return None;
            }
            let (k, within) = (pos / self.len, pos % self.len);
            let take = (self.len - within).min(end - pos);
            pos += take;
            Some((self.first + k * self.stride + within, take))
        })
    }
}

/// Columns to keep of each expanded row when a column range cuts blocks: the work expands
/// `covered` values per row, of which `skip..skip + keep` are the region's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trim {
    /// Values expanded per row.
    pub covered: u64,
    /// Leading values to drop.
    pub skip: u64,
    /// Values to keep.
    pub keep: u64,
}

/// A tensor's plan.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    /// What to do.
    pub work: Work,
    /// What the output holds.
    pub dtype: TensorDType,
    /// The block geometry of the tensor's type.
    pub geometry: BlockGeometry,
    /// The bytes to read, whole blocks.
    pub spans: Spans,
    /// Blocks read in all.
    pub blocks: u64,
    /// The output's dimensions, ggml order.
    pub shape: Vec<u64>,
    /// The output's bytes.
    pub out_bytes: u64,
    /// Columns to cut from the expanded rows, when the region cuts blocks.
    pub trim: Option<Trim>,
}

/// Why a tensor cannot be planned. The executor adds the file and the tensor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Values were asked of an integer tensor where it cannot be kept as it is.
    #[error("is an integer tensor ({0}); it has no float values")]
    Integer(GgmlType),
    /// No linked format handles the type.
    #[error("has type {0}, which no linked format handles")]
    Unsupported(GgmlType),
    /// The type has no known block size.
    #[error("has type {0}, whose block size is unknown")]
    UnknownType(GgmlType),
    /// The tensor's sizes overflow this machine's.
    #[error("is too large for this machine ({0} elements)")]
    TooLarge(u64),
    /// The region is not inside the tensor, or its rows are not whole blocks.
    #[error("{0}")]
    Region(String),
    /// Native blocks were asked of a column range that cuts blocks.
    #[error(
        "columns {start}..{end} cut blocks of {block_elems} values; native blocks can only be \
         taken at multiples of {block_elems}"
    )]
    CutsBlocks {
        /// First column.
        start: u64,
        /// End column.
        end: u64,
        /// Values per block.
        block_elems: u64,
    },
    /// Blocks on the device need a kernel, and the format has none.
    #[error("{0} has no kernel to expand blocks already on the device")]
    NoKernel(GgmlType),
}

/// The format that gives a tensor of type `ty` its values: [`PlanError::Integer`] for an
/// integer type (no format converts one), [`PlanError::Unsupported`] when none is linked.
pub fn value_format(ty: GgmlType) -> Result<&'static dyn QuantFormat, PlanError> {
    if ty.is_integer() {
        return Err(PlanError::Integer(ty));
    }
    quant_core::lookup(ty).ok_or(PlanError::Unsupported(ty))
}

/// Plans a tensor of type `ty` and dimensions `dims` (ggml order), loaded as `as_` into
/// `target`; `region` is a part of it, `None` the whole.
pub fn plan(
    ty: GgmlType,
    dims: &[u64],
    as_: LoadAs,
    region: Option<&Region>,
    target: Target,
) -> Result<TensorPlan, PlanError> {
    let geometry = ty.geometry().ok_or(PlanError::UnknownType(ty))?;
    let work = work_for(ty, as_, target)?;
    let dtype = match work {
        Work::Kernel { dtype, .. } | Work::Host { dtype, .. } => TensorDType::Values(dtype),
        Work::Copy { .. } => TensorDType::Native(ty),
    };
    let cut = cut(dims, geometry, region)?;
    if matches!(work, Work::Copy { .. }) && cut.trim.is_some() {
        let cols = region.map_or(0..0, |r| r.cols.clone());
        return Err(PlanError::CutsBlocks {
            start: cols.start,
            end: cols.end,
            block_elems: geometry.block_elems as u64,
        });
    }
    if matches!(work, Work::Kernel { .. }) && cut.trim.is_some() {
        return Err(PlanError::Region(format!(
            "columns {:?} cut blocks of {} values; on a device, ask for columns at block \
             boundaries",
            region.map_or(0..0, |r| r.cols.clone()),
            geometry.block_elems
        )));
    }
    let out_bytes = match work {
        Work::Copy { .. } => Some(cut.spans.total()),
        Work::Kernel { dtype, .. } | Work::Host { dtype, .. } => {
            cut.elements.checked_mul(dtype.size() as u64)
        }
    };
    let out_bytes = out_bytes
        .filter(|&b| usize::try_from(b).is_ok())
        .ok_or(PlanError::TooLarge(cut.elements))?;
    Ok(TensorPlan {
        work,
        dtype,
        geometry,
        spans: cut.spans,
        blocks: cut.spans.total() / geometry.block_bytes as u64,
        shape: cut.shape,
        out_bytes,
        trim: cut.trim,
    })
}

/// The decision: kernel, copy or host conversion, for type `ty` asked as `as_` in `target`.
fn work_for(ty: GgmlType, as_: LoadAs, target: Target) -> Result<Work, PlanError> {
    let dtype = match as_ {
        LoadAs::Native if target == Target::Caller => return Err(PlanError::NoKernel(ty)),
        LoadAs::Native => return Ok(Work::Copy { kept: false }),
        LoadAs::Values(d) => d,
    };
    let format = match value_format(ty) {
        Err(PlanError::Integer(_)) if matches!(target, Target::Device | Target::Baseline) => {
            return Ok(Work::Copy { kept: true })
        }
        Err(PlanError::Integer(_)) if target == Target::Host => {
            return Ok(Work::Copy { kept: true })
        }
        other => other?,
    };
    let host = |why| Work::Host { format, dtype, why };
    Ok(match (target, format.kernel()) {
        (Target::Host, _) => host(HostWhy::NoDevice),
        (Target::Baseline, _) => host(HostWhy::Baseline),
        (_, Some(spec)) => Work::Kernel {
            format,
            spec,
            dtype,
        },
        (Target::DeviceBlocks, None) => return Err(PlanError::NoKernel(ty)),
        (_, None) => host(HostWhy::NoKernel),
    })
}

/// The bytes, elements and shape of a region.
struct Cut {
    spans: Spans,
    elements: u64,
    shape: Vec<u64>,
    trim: Option<Trim>,
}

/// Cuts `region` (the whole tensor when `None`) out of a tensor of `dims` stored as `g`.
fn cut(dims: &[u64], g: BlockGeometry, region: Option<&Region>) -> Result<Cut, PlanError> {
    let (be, bb) = (g.block_elems as u64, g.block_bytes as u64);
    let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let elements = elements.ok_or(PlanError::TooLarge(u64::MAX))?;
    let whole_bytes = (elements / be.max(1)).checked_mul(bb);
    let whole_bytes = whole_bytes.ok_or(PlanError::TooLarge(elements))?;
    let Some(r) = region.filter(|r| **r != Region::whole(dims)) else {
        let spans = Spans {
            first: 0,
            len: whole_bytes,
            stride: whole_bytes,
            count: 1,
        };
        let trim = None;
        return Ok(Cut {
            spans,
            elements,
            shape: dims.to_vec(),
            trim,
        });
    };
    let (ne0, rows) = row_view(dims);
    if ne0 % be != 0 {
        return Err(PlanError::Region(format!(
            "rows of {ne0} values are not whole blocks of {be}"
        )));
    }
    let bad = r.rows.start > r.rows.end || r.rows.end > rows;
    if bad || r.cols.start > r.cols.end || r.cols.end > ne0 {
        return Err(PlanError::Region(format!(
            "region rows {:?}, columns {:?} is not inside {rows} rows of {ne0} values",
            r.rows, r.cols
        )));
    }
    let row_bytes = ne0 / be * bb;
    let (b0, b1) = (r.cols.start / be, r.cols.end.div_ceil(be));
    let n_rows = r.rows.end - r.rows.start;
    let keep = r.cols.end - r.cols.start;
    let covered = (b1 - b0) * be;
    // An empty column range reads nothing, even when its covering block spans whole rows.
    let full_rows = keep != 0 && b0 == 0 && b1 * be == ne0;
    let spans = if full_rows {
        let len = n_rows * row_bytes;
        Spans {
            first: r.rows.start * row_bytes,
            len,
            stride: len,
            count: 1,
        }
    } else {
        Spans {
            first: r.rows.start * row_bytes + b0 * bb,
            len: (b1 - b0) * bb,
            stride: row_bytes,
            count: if keep == 0 { 0 } else { n_rows },
        }
    };
    let trim = (covered != keep && keep != 0).then_some(Trim {
        covered,
        skip: r.cols.start - b0 * be,
        keep,
    });
    Ok(Cut {
        spans,
        elements: n_rows * keep,
        shape: vec![keep, n_rows],
        trim,
    })
}

/// A planned job as the batch packer sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobShape {
    /// Blocks to move.
    pub blocks: u64,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Every piece but a job's last holds a multiple of this many blocks (so that kernel
    /// outputs start at multiples of [`ALIGN`]).
    pub block_multiple: u64,
}

impl JobShape {
    /// The shape of a planned tensor in the pipeline. A slot holds what goes to the device:
    /// the blocks, or for values made on the host the values.
    pub fn of(plan: &TensorPlan) -> JobShape {
        let g = plan.geometry;
        let (block_bytes, block_multiple) = match plan.work {
            Work::Kernel { dtype, .. } => {
                let m = block_multiple((g.block_elems * dtype.size()) as u64);
                (g.block_bytes, m)
            }
            Work::Host { dtype, .. } => (g.block_elems * dtype.size(), 1),
            Work::Copy { .. } => (g.block_bytes, 1),
        };
        JobShape {
            blocks: plan.blocks,
            block_bytes,
            block_multiple,
        }
    }
}

/// A contiguous run of one job's blocks inside one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Index of the job in the list given to [`plan_batches`].
    pub job: usize,
    /// First block of the run, counted over the job's spans.
    pub first_block: u64,
    /// Blocks in the run.
    pub n_blocks: u64,
    /// Byte offset of the run in the job's spans read one after another.
    pub job_offset: u64,
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

/// Blocks per piece must be a multiple of this so that `blocks * out_bytes_per_block` is a
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
            let mut fit = slot_bytes.saturating_sub(start) as u64 / bb;
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
                job_offset: done * bb,
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

#[cfg(test)]
mod tests;
