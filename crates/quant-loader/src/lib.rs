//! # quant-loader
//!
//! [`GgufLoader`] joins the three other layers: the GGUF reader (`quant-gguf`) gives a tensor's
//! type, shape and bytes; the [registry](quant_core::registry()) gives the format that handles
//! the type; a [`Backend`] uploads the quantized bytes and runs the format's kernel. Nothing here
//! knows any format: there is no `match` on tensor types.
//!
//! Every load goes the same way:
//!
//! ```text
//! GgufLoader::load_with ──► plan::plan (per tensor: kernel, copy or host conversion,
//!                           which bytes, what output)
//!                       ──► an executor: Pipelined | Serial | Host | IntoCaller
//!                       ──► Loaded { tensors, report }
//! ```
//!
//! The [planner](plan) is the only place that decides what a tensor needs. Executors carry
//! plans out over one shared core (error context, the one fallback to the CPU reference,
//! report rows) and return what they load; nothing is kept behind. A [`TensorCache`] is there
//! for callers that load single tensors again and again; whole-model loads never use it.
//!
//! Integer tensors (I8, I16, I32, I64: indices or ids, not weights) are never converted: a
//! load puts their bytes on the device or in host memory as they are and reports them as
//! [`LoadPath::Kept`]; asking for their values as floats is [`LoadError::IntegerTensor`].
//!
//! When a format's kernel cannot run on a device (no code object, compile or launch error), the
//! loader falls back to the CPU reference and uploads its result, logs a warning and counts it in
//! the [`LoadReport`]; with [`FallbackPolicy::Deny`] that is an error instead.
#![warn(missing_docs)]
#![warn(clippy::too_many_lines)]

pub mod blocks;
mod cache;
mod error;
mod exec;
mod options;
mod pipeline;
mod placement;
pub mod plan;
mod report;

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use quant_core::cpu::{self, CpuPath};
use quant_core::{OutputDType, QuantFormat};
use quant_gguf::{GgufFile, OpenOptions, TensorInfo};
use quant_gpu::{Backend, Buffer, DeviceTensor};

pub use cache::TensorCache;
pub use error::LoadError;
pub use exec::{HostData, HostTensor};
pub use options::{FallbackPolicy, LoadAs, LoaderOptions, PipelineOptions, Progress, Strategy};
pub use placement::{layer_of, DevicePlacement, Placement};
pub use plan::{Region, Target, TensorPlan, ALIGN};
pub use report::{LoadPath, LoadReport, Loaded, TensorLoad};

use exec::{Core, Host, IntoCaller, Serial, Stamp};
use pipeline::{Job, Pipelined};

/// What one device's load is asked for: tensors of the file, or a region of each
/// (`regions[k]` of `tensors[k]`), and as what.
#[derive(Clone, Copy)]
struct Request<'a> {
    tensors: &'a [TensorInfo],
    regions: Option<&'a [Region]>,
    as_: LoadAs,
}

impl<'a> Request<'a> {
    /// The whole of each of `tensors`.
    fn whole(tensors: &'a [TensorInfo], as_: LoadAs) -> Self {
        Request {
            tensors,
            regions: None,
            as_,
        }
    }
}

/// Loads the tensors of one GGUF file onto a device or into host memory.
pub struct GgufLoader {
    file: GgufFile,
    /// How the file stood on disk when opened (checked after every read).
    opened: Option<Stamp>,
    options: LoaderOptions,
}

impl GgufLoader {
    /// Opens a GGUF file with the default options (read with positioned reads, not mapped).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::open_with(path, LoaderOptions::default())
    }

    /// Opens a GGUF file with options.
    pub fn open_with(path: impl AsRef<Path>, options: LoaderOptions) -> Result<Self, LoadError> {
        // Taken before the header is read, so that a rewrite during the open is seen too.
        let opened = Stamp::of(path.as_ref());
        let file = GgufFile::open_with(path, OpenOptions { mmap: options.mmap })?;
        Ok(GgufLoader {
            file,
            opened,
            options,
        })
    }

    /// Wraps an already parsed file (its state on disk is taken now).
    pub fn from_file(file: GgufFile, options: LoaderOptions) -> Self {
        let opened = Stamp::of(file.path());
        GgufLoader {
            file,
            opened,
            options,
        }
    }

    /// The parsed file.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn core(&self) -> Core<'_> {
        Core {
            file: &self.file,
            opened: self.opened,
            fallback: self.options.fallback,
            cancel: None,
        }
    }

    /// A tensor's info, or an error naming the file and the tensor.
    pub fn tensor(&self, name: &str) -> Result<TensorInfo, LoadError> {
        self.file.tensor(name).ok_or_else(|| LoadError::NoTensor {
            file: self.file.path().to_path_buf(),
            tensor: name.to_string(),
        })
    }

    /// A tensor's bytes exactly as the file stores them (borrowed from the mapping, or read
    /// into a buffer of exactly their size), after checking that the file still has the size
    /// it had when opened.
    pub fn tensor_raw(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        let t = self.tensor(name)?;
        let whole = plan::plan(t.ty, &t.dims, LoadAs::Native, None, Target::Host);
        let spans = whole.map_err(|e| self.core().plan_err(&t, e))?.spans;
        self.core().read(&t, &spans)
    }

    /// The registered format of a tensor; [`LoadError::IntegerTensor`] for an integer tensor
    /// (which no format converts: it is kept as it is), else [`LoadError::Unsupported`] when no
    /// linked format handles its type.
    pub fn format_of(&self, t: &TensorInfo) -> Result<&'static dyn QuantFormat, LoadError> {
        self.core().value_format(t)
    }

    /// The plan of tensor `name` (or `region` of it) loaded as `as_` into `target`: what
    /// work it takes, which bytes it reads, what it produces.
    pub fn plan(
        &self,
        name: &str,
        as_: LoadAs,
        region: Option<&Region>,
        target: Target,
    ) -> Result<TensorPlan, LoadError> {
        self.core().plan(&self.tensor(name)?, as_, region, target)
    }

    /// Dequantizes a tensor into host f32 with the chosen CPU path. An integer tensor is
    /// [`LoadError::IntegerTensor`] (read its bytes with [`GgufLoader::tensor_raw`]).
    pub fn dequantize_to_host(&self, name: &str, path: CpuPath) -> Result<Vec<f32>, LoadError> {
        let t = self.tensor(name)?;
        let core = self.core();
        let plan = core.plan(&t, LoadAs::Values(OutputDType::F32), None, Target::Host)?;
        let format = core.value_format(&t)?;
        let bytes = core.read(&t, &plan.spans)?;
        cpu::dequantize_to_vec(format, &bytes, path).map_err(|source| LoadError::Core {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            source,
        })
    }

    /// Loads one tensor onto `backend` as `dtype` (an [`OutputDType`] or [`LoadAs::Native`]):
    /// uploads its quantized bytes and expands them with the format's kernel (or keeps them
    /// as they are). An integer tensor is uploaded as it is whatever `dtype` says. The tensor
    /// is the caller's; nothing is cached (see [`TensorCache`]).
    pub fn load_tensor(
        &self,
        name: &str,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<(DeviceTensor, TensorLoad), LoadError> {
        self.load_region(name, None, backend, dtype)
    }

    /// [`GgufLoader::load_tensor`] without the report row.
    pub fn load_tensor_to_gpu(
        &self,
        name: &str,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<DeviceTensor, LoadError> {
        self.load_tensor(name, backend, dtype).map(|(t, _)| t)
    }

    /// Loads `region` of tensor `name` (the whole of it for `None`) onto `backend`, reading
    /// only the bytes of its rows and of the blocks that cover its columns. On a device the
    /// columns must start and end at block boundaries.
    pub fn load_region(
        &self,
        name: &str,
        region: Option<&Region>,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<(DeviceTensor, TensorLoad), LoadError> {
        let t = self.tensor(name)?;
        let core = self.core();
        let plan = core.plan(&t, dtype.into(), region, Target::Device)?;
        Serial { core, backend }.load(&t, &plan)
    }

    /// Loads `region` of tensor `name` (the whole of it for `None`) into host memory with the
    /// fast CPU path: values rounded to the asked type, the native blocks, or an integer
    /// tensor's bytes kept.
    pub fn load_to_host(
        &self,
        name: &str,
        region: Option<&Region>,
        as_: LoadAs,
    ) -> Result<(HostTensor, TensorLoad), LoadError> {
        let t = self.tensor(name)?;
        let core = self.core();
        let plan = core.plan(&t, as_, region, Target::Host)?;
        Host { core }.load(&t, &plan)
    }

    /// Dequantizes tensor `name` into device memory the caller owns: its values as `dtype` land
    /// at `dst[dst_offset..]` (a [`Buffer`] of `backend`'s, or the engine's own memory wrapped
    /// with [`Backend::wrap_device_memory`]; see [`GgufLoader::dequantize_into_ptr`]). The
    /// quantized bytes go up to a scratch buffer that is freed before this returns; the kernel
    /// runs on the backend's compute stream (an engine's stream, with `quant_cuda`'s
    /// `CudaBackend::on_stream`), and this returns when it has finished. Nothing is cached.
    ///
    /// Checked before anything is uploaded: `dst_offset` is a multiple of 16 bytes and the
    /// values fit in `dst` after it. An integer tensor is [`LoadError::IntegerTensor`].
    pub fn dequantize_into(
        &self,
        name: &str,
        backend: &dyn Backend,
        dst: &mut Buffer,
        dst_offset: usize,
        dtype: OutputDType,
    ) -> Result<TensorLoad, LoadError> {
        let t = self.tensor(name)?;
        let core = self.core();
        let plan = core.plan(&t, LoadAs::Values(dtype), None, Target::Caller)?;
        IntoCaller { core, backend }.load(&t, &plan, dst, dst_offset)
    }

    /// [`GgufLoader::dequantize_into`] for an engine's raw device pointer: `len` bytes at `ptr`
    /// on `backend`'s device receive the tensor's values as `dtype` from the start. The
    /// backend checks the pointer first ([`Backend::wrap_device_memory`]: not null, 16-byte
    /// aligned, inside one allocation of this device that holds `len` bytes), then this checks
    /// that the values fit in `len`.
    ///
    /// # Safety
    /// `[ptr, ptr + len)` must stay allocated and must not be used concurrently by other work
    /// until this returns.
    pub unsafe fn dequantize_into_ptr(
        &self,
        name: &str,
        backend: &dyn Backend,
        ptr: u64,
        len: usize,
        dtype: OutputDType,
    ) -> Result<TensorLoad, LoadError> {
        let t = self.tensor(name)?;
        // SAFETY: forwarded from this function's contract.
        let mut dst = unsafe { backend.wrap_device_memory(ptr, len) }
            .map_err(|e| self.core().gpu_err(&t, backend, e))?;
        self.dequantize_into(name, backend, &mut dst, 0, dtype)
    }

    /// Loads every tensor onto `backend` as `dtype` with the default [`PipelineOptions`].
    pub fn load_all(
        &self,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<Loaded<DeviceTensor>, LoadError> {
        let opts = PipelineOptions::default();
        self.load_with(backend, dtype.into(), &opts, &mut |_| {})
    }

    /// Loads every tensor onto `backend` as `as_` with `opts`, calling `progress` per chunk of
    /// bytes queued and per tensor done. Tensors and rows come back in file order.
    pub fn load_with(
        &self,
        backend: &dyn Backend,
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Loaded<DeviceTensor>, LoadError> {
        let all: Vec<TensorInfo> = self.file.tensors().collect();
        self.load_tensors(backend, Request::whole(&all, as_), (opts, None), progress)
    }

    /// Loads `regions` (each a tensor's name and a [`Region`] of it: rows, and the values of
    /// each row in a column range) onto `backend` as `as_` by the pipelined load, as
    /// [`load_with`](Self::load_with) loads whole tensors, reading only each region's bytes:
    /// its rows, and in each row the blocks of its columns (a tensor-parallel rank's rows, or
    /// its columns of every row). Columns start and end at block boundaries, as for
    /// [`load_region`](Self::load_region) on a device. Tensors and rows come back in the order
    /// of `regions`, each tensor shaped as its region.
    pub fn load_regions(
        &self,
        backend: &dyn Backend,
        regions: &[(String, Region)],
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Loaded<DeviceTensor>, LoadError> {
        let tensors = regions
            .iter()
            .map(|(name, _)| self.tensor(name))
            .collect::<Result<Vec<_>, _>>()?;
        let cuts: Vec<Region> = regions.iter().map(|(_, r)| r.clone()).collect();
        let request = Request {
            tensors: &tensors,
            regions: Some(&cuts),
            as_,
        };
        self.load_tensors(backend, request, (opts, None), progress)
    }

    /// [`load_with`](Self::load_with) that stops with [`LoadError::Interrupted`] once `cancel`
    /// is set (by `progress`, or another thread): each reader stops before its next batch, a
    /// serial load before its next tensor, and everything the load took is freed. What was
    /// queued already runs to its end first, so a load stops within a few batches' time.
    pub fn load_with_cancel(
        &self,
        backend: &dyn Backend,
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &mut dyn FnMut(&Progress),
        cancel: &AtomicBool,
    ) -> Result<Loaded<DeviceTensor>, LoadError> {
        let all: Vec<TensorInfo> = self.file.tensors().collect();
        let request = Request::whole(&all, as_);
        self.load_tensors(backend, request, (opts, Some(cancel)), progress)
    }

    /// Plans `request` into `target`.
    fn plan_all<'t>(
        &self,
        request: Request<'t>,
        target: Target,
    ) -> Result<Vec<Job<'t>>, LoadError> {
        let core = self.core();
        let region = |k: usize| request.regions.map(|r| &r[k]);
        let plan = |(k, t): (usize, &'t TensorInfo)| {
            Ok((t, core.plan(t, request.as_, region(k), target)?))
        };
        request.tensors.iter().enumerate().map(plan).collect()
    }

    /// The infos of the tensors at `indices` (positions in file order), or an error naming
    /// one this file does not have.
    fn tensors_at(&self, indices: &[usize]) -> Result<Vec<TensorInfo>, LoadError> {
        let info = |&i: &usize| {
            self.file.tensor_at(i).ok_or_else(|| LoadError::Options {
                file: self.file.path().to_path_buf(),
                reason: format!(
                    "the placement names tensor #{i}; the file has {}",
                    self.file.tensor_count()
                ),
            })
        };
        indices.iter().map(info).collect()
    }

    /// Loads `request` (tensors of this file, or regions of them) onto one device: the body of
    /// [`GgufLoader::load_with`], [`GgufLoader::load_regions`] and each device's thread in
    /// [`GgufLoader::load_placed`].
    fn load_tensors(
        &self,
        backend: &dyn Backend,
        request: Request,
        (opts, cancel): (&PipelineOptions, Option<&AtomicBool>),
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Loaded<DeviceTensor>, LoadError> {
        let start = Instant::now();
        let core = Core {
            cancel,
            ..self.core()
        };
        if opts.strategy == Strategy::CpuDequant && request.as_ == LoadAs::Native {
            return Err(LoadError::Options {
                file: self.file.path().to_path_buf(),
                reason: "the cpu-dequant strategy produces values; it cannot keep native \
                         blocks"
                    .into(),
            });
        }
        let target = match opts.strategy {
            Strategy::CpuDequant => Target::Baseline,
            _ => Target::Device,
        };
        let jobs = self.plan_all(request, target)?;
        let loaded = if opts.strategy == Strategy::Pipelined && backend.async_primitives() {
            Pipelined {
                core,
                backend,
                opts,
            }
            .load(&jobs, progress)?
        } else {
            let serial = Serial { core, backend };
            let mut loaded = Vec::with_capacity(jobs.len());
            for (t, plan) in &jobs {
                core.check_cancel()?;
                let (tensor, row) = serial.load(t, plan)?;
                progress(&Progress::Bytes(plan.spans.total()));
                progress(&Progress::Tensor(&row));
                loaded.push((tensor, row));
            }
            loaded
        };
        let (tensors, rows) = loaded.into_iter().unzip();
        Ok(Loaded {
            tensors,
            report: LoadReport {
                device: backend.info().label(),
                tensors: rows,
                total_time: start.elapsed(),
            },
        })
    }

    /// A measure, not a load: every tensor's bytes read into the pipeline's ring of pinned
    /// slots and copied to the device through it, with no outputs and no kernels. Its total
    /// time is what a load through the same ring cannot beat (docs/performance.md).
    pub fn bare_copy(
        &self,
        backend: &dyn Backend,
        opts: &PipelineOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<LoadReport, LoadError> {
        let start = Instant::now();
        let all: Vec<TensorInfo> = self.file.tensors().collect();
        let jobs = self.plan_all(Request::whole(&all, LoadAs::Native), Target::Device)?;
        let core = self.core();
        Pipelined {
            core,
            backend,
            opts,
        }
        .bare(&jobs, progress)?;
        let row = |(t, p): &Job| {
            let bytes = (p.spans.total(), 0);
            core.row(t, p, bytes, std::time::Duration::ZERO, LoadPath::BareCopy)
        };
        Ok(LoadReport {
            device: backend.info().label(),
            tensors: jobs.iter().map(row).collect(),
            total_time: start.elapsed(),
        })
    }

    /// Loads each device's share of `placement` onto its backend (`backends[i]` for
    /// `placement.devices[i]`), one thread per device, all at once. Returns what each device
    /// got. `progress` is called from those threads.
    pub fn load_placed(
        &self,
        backends: &[&dyn Backend],
        placement: &Placement,
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Vec<Loaded<DeviceTensor>>, LoadError> {
        if backends.len() != placement.devices.len() {
            return Err(LoadError::Options {
                file: self.file.path().to_path_buf(),
                reason: format!(
                    "{} backends for a placement over {} devices",
                    backends.len(),
                    placement.devices.len()
                ),
            });
        }
        let shares: Vec<Vec<TensorInfo>> = placement
            .devices
            .iter()
            .map(|d| self.tensors_at(&d.tensors))
            .collect::<Result<_, _>>()?;
        std::thread::scope(|s| {
            let handles: Vec<_> = backends
                .iter()
                .zip(shares)
                .map(|(b, tensors)| {
                    let load = move || {
                        let opts = (opts, None);
                        let request = Request::whole(&tensors, as_);
                        self.load_tensors(*b, request, opts, &mut |p| progress(p))
                    };
                    s.spawn(load)
                })
                .collect();
            let joined = handles.into_iter().map(|h| h.join());
            joined
                .map(|r| r.unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// Loads every tensor into host memory with the fast CPU path (the load when no GPU is
    /// present): values as `as_` asks, the native blocks, or an integer tensor's bytes kept
    /// ([`LoadPath::Kept`]). `progress` hears of each tensor.
    pub fn load_all_to_host(
        &self,
        as_: LoadAs,
        progress: &mut dyn FnMut(&TensorLoad),
    ) -> Result<Loaded<HostTensor>, LoadError> {
        let all: Vec<TensorInfo> = self.file.tensors().collect();
        self.load_tensors_to_host(&all, as_, progress)
    }

    /// Loads `tensors` (of this file) into host memory, one after another: the body of
    /// [`GgufLoader::load_all_to_host`].
    fn load_tensors_to_host(
        &self,
        all: &[TensorInfo],
        as_: LoadAs,
        progress: &mut dyn FnMut(&TensorLoad),
    ) -> Result<Loaded<HostTensor>, LoadError> {
        let start = Instant::now();
        let host = Host { core: self.core() };
        let mut tensors = Vec::with_capacity(all.len());
        let mut rows = Vec::with_capacity(all.len());
        for (t, plan) in self.plan_all(Request::whole(all, as_), Target::Host)? {
            let (tensor, row) = host.load(t, &plan)?;
            progress(&row);
            tensors.push(tensor);
            rows.push(row);
        }
        Ok(Loaded {
            tensors,
            report: LoadReport {
                device: "cpu".to_string(),
                tensors: rows,
                total_time: start.elapsed(),
            },
        })
    }
}
