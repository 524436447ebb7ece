//! # quant-loader
//!
//! [`GgufLoader`] joins the three other layers: the GGUF reader (`quant-gguf`) gives a tensor's
//! type, shape and bytes; the [registry](quant_core::registry()) gives the format that handles
//! the type; a [`Backend`] uploads the quantized bytes and runs the format's kernel. Nothing here
//! knows any format: there is no `match` on tensor types.
//!
//! Data flows one way: file → reader → registry → backend → [`DeviceTensor`].
//!
//! [`GgufLoader::load_with`] loads a whole model through a pipeline (module `pipeline`): a
//! ring of pinned staging slots filled by reader threads, copies on one device queue, kernels on
//! another, fences between them; [`Placement`] and [`GgufLoader::load_placed`] spread whole
//! layers over several devices and load each device's share in parallel.
//!
//! Integer tensors (I8, I16, I32, I64: indices or ids, not weights; recognised by
//! [`GgmlType::is_integer`](quant_core::GgmlType::is_integer), not by a match) are never
//! converted: a load puts their bytes on the device or in host memory as they are and reports
//! them as [`LoadPath::Kept`]; asking for their values as floats is
//! [`LoadError::IntegerTensor`].
//!
//! When a format's kernel cannot run on a device (no code object, compile or launch error), the
//! loader falls back to the CPU reference and uploads its result, logs a warning and counts it in
//! the [`LoadReport`]; with [`FallbackPolicy::Deny`] that is an error instead.
#![warn(missing_docs)]

mod error;
mod pipeline;
mod placement;
mod report;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quant_core::cpu::{self, CpuPath};
use quant_core::{OutputDType, QuantFormat};
use quant_gguf::{GgufFile, OpenOptions, TensorInfo};
use quant_gpu::{check_region, Backend, Buffer, DeviceKind, DeviceTensor, GpuError, TensorDType};

pub use error::LoadError;
pub use pipeline::{LoadAs, PipelineOptions, Progress, Strategy, ALIGN};
pub use placement::{layer_of, DevicePlacement, Placement};
pub use report::{LoadPath, LoadReport, TensorLoad};

/// What to do when a format's kernel cannot run on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// Dequantize with the CPU reference and upload the result; warn and count it.
    #[default]
    Allow,
    /// Fail the load.
    Deny,
}

/// Options of [`GgufLoader::open_with`].
#[derive(Clone, Copy, Debug)]
pub struct LoaderOptions {
    /// Map the file (`true`, zero-copy) or read it with ordinary positioned reads (`false`;
    /// safe against files truncated by another process: a short read is an error, where a
    /// mapping would raise SIGBUS). Unmapped, only the header is read on open; tensor bytes are
    /// read on demand, into the pipeline's staging slots or, on the CPU paths, one tensor at a
    /// time.
    pub mmap: bool,
    /// Kernel fallback policy.
    pub fallback: FallbackPolicy,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            mmap: true,
            fallback: FallbackPolicy::Allow,
        }
    }
}

type CacheKey = (String, LoadAs, DeviceKind, usize);

/// The cache's key of tensor `name` loaded as `as_` onto `backend`'s device.
fn cache_key(name: &str, as_: LoadAs, backend: &dyn Backend) -> CacheKey {
    let info = backend.info();
    (name.to_string(), as_, info.kind, info.ordinal)
}

/// Loads the tensors of one GGUF file onto a device or into host memory.
pub struct GgufLoader {
    file: GgufFile,
    options: LoaderOptions,
    cache: Mutex<HashMap<CacheKey, Arc<DeviceTensor>>>,
}

impl GgufLoader {
    /// Opens (maps) a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::open_with(path, LoaderOptions::default())
    }

    /// Opens a GGUF file with options.
    pub fn open_with(path: impl AsRef<Path>, options: LoaderOptions) -> Result<Self, LoadError> {
        let file = GgufFile::open_with(path, OpenOptions { mmap: options.mmap })?;
        Ok(Self::from_file(file, options))
    }

    /// Wraps an already parsed file.
    pub fn from_file(file: GgufFile, options: LoaderOptions) -> Self {
        GgufLoader {
            file,
            options,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The parsed file.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// A tensor's info, or an error naming the file and the tensor.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, LoadError> {
        self.file.tensor(name).ok_or_else(|| LoadError::NoTensor {
            file: self.file.path().to_path_buf(),
            tensor: name.to_string(),
        })
    }

    /// A tensor's bytes, after checking that the file on disk still has the size it had when
    /// opened. A mapped file truncated by another process would otherwise kill this process with
    /// SIGBUS on first touch of the lost pages. (A truncation racing with this very check can
    /// still do that: `--no-mmap` is the safe choice for files that may change; there a short
    /// read is an error naming the tensor.)
    ///
    /// Borrowed from the mapping, or (unmapped) read into a buffer of exactly the tensor's
    /// size, which the caller drops before it reads the next tensor.
    fn tensor_bytes(&self, t: &TensorInfo) -> Result<Cow<'_, [u8]>, LoadError> {
        self.check_unchanged()?;
        Ok(self.file.tensor_data(t)?)
    }

    /// [`LoadError::FileChanged`] if the file on disk no longer has the size it had when opened.
    pub(crate) fn check_unchanged(&self) -> Result<(), LoadError> {
        if let Ok(meta) = std::fs::metadata(self.file.path()) {
            let was = self.file.file_len();
            if meta.len() != was {
                return Err(LoadError::FileChanged {
                    file: self.file.path().to_path_buf(),
                    was,
                    now: meta.len(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn read_err(&self, t: &TensorInfo, reason: &str) -> LoadError {
        LoadError::Read {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// A tensor's bytes exactly as the file stores them (borrowed from the mapping, or read
    /// into a buffer when the file is not mapped): how integer tensors, which are never
    /// converted, are read.
    pub fn tensor_raw(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        self.tensor_bytes(self.tensor(name)?)
    }

    /// The registered format of a tensor; [`LoadError::IntegerTensor`] for an integer tensor
    /// (which no format converts: it is kept as it is), else [`LoadError::Unsupported`] when no
    /// linked format handles its type.
    pub fn format_of(&self, t: &TensorInfo) -> Result<&'static dyn QuantFormat, LoadError> {
        if t.ty.is_integer() {
            return Err(LoadError::IntegerTensor {
                file: self.file.path().to_path_buf(),
                tensor: t.name.clone(),
                ty: t.ty,
            });
        }
        quant_core::lookup(t.ty).ok_or_else(|| LoadError::Unsupported {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            ty: t.ty,
        })
    }

    pub(crate) fn elements(&self, t: &TensorInfo) -> Result<usize, LoadError> {
        usize::try_from(t.n_elements).map_err(|_| LoadError::TooLarge {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            elements: t.n_elements,
        })
    }

    fn core_err(&self, t: &TensorInfo, source: quant_core::CoreError) -> LoadError {
        LoadError::Core {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            source,
        }
    }

    pub(crate) fn gpu_err(
        &self,
        t: &TensorInfo,
        backend: &dyn Backend,
        source: GpuError,
    ) -> LoadError {
        LoadError::Gpu {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            device: device_label(backend),
            source: Box::new(source),
        }
    }

    /// Dequantizes a tensor into host f32 with the chosen CPU path. An integer tensor is
    /// [`LoadError::IntegerTensor`] (read its bytes with [`GgufLoader::tensor_raw`]).
    pub fn dequantize_to_host(&self, name: &str, path: CpuPath) -> Result<Vec<f32>, LoadError> {
        self.values(self.tensor(name)?, path)
    }

    /// A tensor's values in host f32, by the chosen CPU path.
    fn values(&self, t: &TensorInfo, path: CpuPath) -> Result<Vec<f32>, LoadError> {
        let format = self.format_of(t)?;
        self.elements(t)?;
        cpu::dequantize_to_vec(format, &self.tensor_bytes(t)?, path)
            .map_err(|e| self.core_err(t, e))
    }

    /// Allocates device memory for `bytes`, uploads them (through pinned staging, or from
    /// pageable memory as the old path did) and waits: the tensor as it lands on the device.
    fn upload_tensor(
        &self,
        t: &TensorInfo,
        backend: &dyn Backend,
        bytes: &[u8],
        dtype: TensorDType,
        pageable: bool,
    ) -> Result<DeviceTensor, LoadError> {
        let upload = || -> Result<DeviceTensor, GpuError> {
            let mut dst = backend.alloc(bytes.len())?;
            if pageable {
                backend.upload_pageable(bytes, &mut dst)?;
            } else {
                backend.upload(bytes, &mut dst)?;
            }
            backend.synchronize()?;
            Ok(DeviceTensor {
                buffer: dst,
                shape: t.dims.clone(),
                dtype,
            })
        };
        upload().map_err(|e| self.gpu_err(t, backend, e))
    }

    /// What a kernel failure `e` becomes under the fallback policy: an error under
    /// [`FallbackPolicy::Deny`], else the CPU reference's values uploaded, with a warning.
    pub(crate) fn fall_back(
        &self,
        t: &TensorInfo,
        backend: &dyn Backend,
        dtype: OutputDType,
        e: GpuError,
    ) -> Result<(DeviceTensor, LoadPath), LoadError> {
        if self.options.fallback == FallbackPolicy::Deny {
            return Err(self.gpu_err(t, backend, e));
        }
        tracing::warn!(
            tensor = %t.name,
            device = %device_label(backend),
            "the {} kernel could not run ({e}); falling back to the CPU reference",
            t.ty
        );
        let dt = self.host_convert(t, backend, dtype, CpuPath::Reference, false)?;
        Ok((dt, LoadPath::Fallback(e.to_string())))
    }

    /// Loads one tensor onto `backend` as `dtype` (an [`OutputDType`] or [`LoadAs::Native`]):
    /// uploads its quantized bytes, expands them with the format's kernel (or keeps them as
    /// they are), and caches the result (a second call returns the cached tensor). An integer
    /// tensor is uploaded as it is whatever `dtype` says ([`TensorDType::Native`] of its type).
    pub fn load_tensor_to_gpu(
        &self,
        name: &str,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<Arc<DeviceTensor>, LoadError> {
        self.load_tensor_reporting(name, backend, dtype)
            .map(|(t, _)| t)
    }

    /// Like [`GgufLoader::load_tensor_to_gpu`], also returning what was done.
    pub fn load_tensor_reporting(
        &self,
        name: &str,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<(Arc<DeviceTensor>, TensorLoad), LoadError> {
        let as_ = dtype.into();
        let start = Instant::now();
        let t = self.tensor(name)?;
        let tdt = as_.tensor_dtype(t);
        if let Some(hit) = self.cached_as(&t.name, as_, backend) {
            let load = self.record(t, tdt, 0, 0, start.elapsed(), LoadPath::Cached);
            return Ok((hit, load));
        }
        let data = self.tensor_bytes(t)?;
        let dtype = match as_ {
            LoadAs::Values(d) if !t.ty.is_integer() => d,
            // The file's bytes untouched: native blocks, or an integer tensor kept as it is.
            _ => {
                let dt = self.upload_tensor(t, backend, &data, tdt, false)?;
                let tensor = self.insert_cached(t, as_, backend, dt);
                let path = if as_ == LoadAs::Native {
                    LoadPath::Native
                } else {
                    LoadPath::Kept
                };
                let load = self.record(t, tdt, data.len() as u64, 0, start.elapsed(), path);
                return Ok((tensor, load));
            }
        };
        let format = self.format_of(t)?;
        let n = self.elements(t)?;
        let out_bytes = n * dtype.size();
        let g = format.geometry();

        let (tensor, uploaded, path) = match format.kernel() {
            Some(spec) => {
                let n_blocks = (n / g.block_elems) as u64;
                let run = || -> Result<DeviceTensor, GpuError> {
                    let mut src = backend.alloc(data.len())?;
                    backend.upload(&data, &mut src)?;
                    let mut dst = backend.alloc(out_bytes)?;
                    backend.dequantize(spec, &src, n_blocks, &mut dst, dtype)?;
                    backend.synchronize()?;
                    Ok(DeviceTensor {
                        buffer: dst,
                        shape: t.dims.clone(),
                        dtype: tdt,
                    })
                };
                match run() {
                    Ok(dt) => (dt, data.len() as u64, LoadPath::Kernel),
                    Err(e) if is_kernel_failure(&e) => {
                        let (dt, path) = self.fall_back(t, backend, dtype, e)?;
                        (dt, out_bytes as u64, path)
                    }
                    Err(e) => return Err(self.gpu_err(t, backend, e)),
                }
            }
            None => {
                let dt = self.host_convert(t, backend, dtype, CpuPath::Fast, false)?;
                (dt, out_bytes as u64, LoadPath::HostConvert)
            }
        };
        let tensor = self.insert_cached(t, as_, backend, tensor);
        let load = self.record(t, tdt, uploaded, out_bytes as u64, start.elapsed(), path);
        Ok((tensor, load))
    }

    /// Dequantizes tensor `name` into device memory the caller owns: its values as `dtype` land
    /// at `dst[dst_offset..]` (a [`Buffer`] of `backend`'s, or the engine's own memory wrapped
    /// with [`Backend::wrap_device_memory`]; see [`GgufLoader::dequantize_into_ptr`]). The
    /// quantized bytes go up to a scratch buffer that is freed before this returns; the kernel
    /// runs on the backend's compute stream (an engine's stream, with `quant_cuda`'s
    /// `CudaBackend::on_stream`), and this returns when it has finished. Nothing is cached.
    ///
    /// Checked before anything is uploaded: `dst_offset` is a multiple of 16 bytes and the
    /// values fit in `dst`. An integer tensor is [`LoadError::IntegerTensor`]; a kernel that
    /// cannot run falls back to the CPU reference as [`FallbackPolicy`] says.
    pub fn dequantize_into(
        &self,
        name: &str,
        backend: &dyn Backend,
        dst: &mut Buffer,
        dst_offset: usize,
        dtype: OutputDType,
    ) -> Result<TensorLoad, LoadError> {
        let start = Instant::now();
        let t = self.tensor(name)?;
        let format = self.format_of(t)?;
        let n = self.elements(t)?;
        let out_bytes = n
            .checked_mul(dtype.size())
            .ok_or_else(|| LoadError::TooLarge {
                file: self.file.path().to_path_buf(),
                tensor: t.name.clone(),
                elements: t.n_elements,
            })?;
        let op = "dequantize_into";
        let checks = || -> Result<(), GpuError> {
            if dst_offset % quant_gpu::KERNEL_ALIGN != 0 {
                return Err(GpuError::Misaligned {
                    op,
                    offset: dst_offset,
                    align: quant_gpu::KERNEL_ALIGN,
                });
            }
            check_region(op, dst_offset, out_bytes, dst.len())
        };
        checks().map_err(|e| self.gpu_err(t, backend, e))?;
        let data = self.tensor_bytes(t)?;
        let g = format.geometry();
        let kernel = |dst: &mut Buffer| -> Result<(), GpuError> {
            let spec = format.kernel().ok_or_else(|| GpuError::NoKernel {
                format: format.name().to_string(),
                reason: "the format has no kernel".into(),
            })?;
            let mut src = backend.alloc(data.len())?;
            backend.upload(&data, &mut src)?;
            let n_blocks = (n / g.block_elems) as u64;
            backend.dequantize_at(spec, &src, 0, n_blocks, dst, dst_offset, dtype)?;
            backend.synchronize()
        };
        let (uploaded, path) = match kernel(dst) {
            Ok(()) => (data.len() as u64, LoadPath::Kernel),
            Err(e) if is_kernel_failure(&e) => {
                let reason = e.to_string();
                if format.kernel().is_some() && self.options.fallback == FallbackPolicy::Deny {
                    return Err(self.gpu_err(t, backend, e));
                }
                let bytes = cpu::encode_as(&self.values(t, CpuPath::Fast)?, dtype);
                backend
                    .upload_at(&bytes, dst, dst_offset)
                    .map_err(|e| self.gpu_err(t, backend, e))?;
                let path = if format.kernel().is_some() {
                    tracing::warn!(
                        tensor = %t.name,
                        device = %device_label(backend),
                        "the {} kernel could not run ({reason}); falling back to the CPU \
                         reference",
                        t.ty
                    );
                    LoadPath::Fallback(reason)
                } else {
                    LoadPath::HostConvert
                };
                (out_bytes as u64, path)
            }
            Err(e) => return Err(self.gpu_err(t, backend, e)),
        };
        Ok(self.record(
            t,
            dtype.into(),
            uploaded,
            out_bytes as u64,
            start.elapsed(),
            path,
        ))
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
            .map_err(|e| self.gpu_err(t, backend, e))?;
        self.dequantize_into(name, backend, &mut dst, 0, dtype)
    }

    /// Takes a loaded tensor out of the cache (a later load loads it again), so that its
    /// memory is freed as soon as the caller lets go of it; `Arc::try_unwrap` then gives the
    /// caller sole ownership (for [`DeviceTensor::into_raw`]).
    pub fn take_cached_as(
        &self,
        name: &str,
        as_: LoadAs,
        backend: &dyn Backend,
    ) -> Option<Arc<DeviceTensor>> {
        self.cache.lock().remove(&cache_key(name, as_, backend))
    }

    /// Caches `tensor` (unless another thread was first) and returns the cached one.
    pub(crate) fn insert_cached(
        &self,
        t: &TensorInfo,
        as_: LoadAs,
        backend: &dyn Backend,
        tensor: DeviceTensor,
    ) -> Arc<DeviceTensor> {
        self.cache
            .lock()
            .entry(cache_key(&t.name, as_, backend))
            .or_insert(Arc::new(tensor))
            .clone()
    }

    /// Dequantizes on the host, rounds to `dtype` and uploads the values (from pageable memory
    /// if `pageable`, as the old path did).
    pub(crate) fn host_convert(
        &self,
        t: &TensorInfo,
        backend: &dyn Backend,
        dtype: OutputDType,
        path: CpuPath,
        pageable: bool,
    ) -> Result<DeviceTensor, LoadError> {
        let bytes = cpu::encode_as(&self.values(t, path)?, dtype);
        self.upload_tensor(t, backend, &bytes, dtype.into(), pageable)
    }

    /// The baseline: CPU dequantization (fast path) to f32, conversion to `dtype`, and an
    /// upload from pageable memory, for one tensor (an integer tensor's bytes as they are).
    fn cpu_dequant(
        &self,
        t: &TensorInfo,
        backend: &dyn Backend,
        dtype: OutputDType,
    ) -> Result<TensorLoad, LoadError> {
        let start = Instant::now();
        let as_ = LoadAs::Values(dtype);
        if self.cached_as(&t.name, as_, backend).is_some() {
            return Ok(self.record(
                t,
                as_.tensor_dtype(t),
                0,
                0,
                start.elapsed(),
                LoadPath::Cached,
            ));
        }
        if t.ty.is_integer() {
            let data = self.tensor_bytes(t)?;
            let dt = self.upload_tensor(t, backend, &data, as_.tensor_dtype(t), true)?;
            self.insert_cached(t, as_, backend, dt);
            let len = data.len() as u64;
            let tdt = as_.tensor_dtype(t);
            return Ok(self.record(t, tdt, len, 0, start.elapsed(), LoadPath::Kept));
        }
        // CPU dequantization (fast path), conversion to `dtype` (for f32 a plain copy, as the
        // old path made), and a pageable upload.
        let dt = self.host_convert(t, backend, dtype, CpuPath::Fast, true)?;
        let len = dt.bytes();
        self.insert_cached(t, as_, backend, dt);
        Ok(self.record(
            t,
            as_.tensor_dtype(t),
            len,
            len,
            start.elapsed(),
            LoadPath::CpuDequant,
        ))
    }

    pub(crate) fn record(
        &self,
        t: &TensorInfo,
        dtype: TensorDType,
        uploaded: u64,
        produced: u64,
        time: Duration,
        path: LoadPath,
    ) -> TensorLoad {
        TensorLoad {
            name: t.name.clone(),
            ty: t.ty,
            shape: t.dims.clone(),
            dtype,
            bytes_uploaded: uploaded,
            bytes_produced: produced,
            time,
            path,
        }
    }

    /// Loads every tensor onto `backend` as `dtype` with the default [`PipelineOptions`], and
    /// reports what was done (rows in file order). The tensors stay in the loader's cache
    /// ([`GgufLoader::cached`]).
    pub fn load_all(
        &self,
        backend: &dyn Backend,
        dtype: impl Into<LoadAs>,
    ) -> Result<LoadReport, LoadError> {
        self.load_with(
            backend,
            dtype.into(),
            &PipelineOptions::default(),
            &mut |_| {},
        )
    }

    /// Loads every tensor onto `backend` as `as_` with `opts`, calling `progress` per chunk of
    /// bytes queued and per tensor done. Rows are in file order.
    pub fn load_with(
        &self,
        backend: &dyn Backend,
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<LoadReport, LoadError> {
        let all: Vec<&TensorInfo> = self.file.tensors().iter().collect();
        self.load_tensors(backend, &all, as_, opts, progress)
    }

    /// Loads `tensors` (of this file) onto one device: the body of [`GgufLoader::load_with`] and
    /// of each device's thread in [`GgufLoader::load_placed`].
    fn load_tensors(
        &self,
        backend: &dyn Backend,
        tensors: &[&TensorInfo],
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<LoadReport, LoadError> {
        let start = Instant::now();
        let mut report = LoadReport {
            device: device_label(backend),
            ..Default::default()
        };
        let strategy = match opts.strategy {
            Strategy::Pipelined if !backend.async_primitives() => Strategy::Serial,
            s => s,
        };
        match (strategy, as_) {
            (Strategy::Pipelined, _) => {
                report.tensors = pipeline::run(self, backend, tensors, as_, opts, progress)?;
            }
            (Strategy::Serial, _) => {
                for t in tensors {
                    let (_, load) = self.load_tensor_reporting(&t.name, backend, as_)?;
                    progress(&Progress::Bytes(t.n_bytes));
                    progress(&Progress::Tensor(&load));
                    report.tensors.push(load);
                }
            }
            (Strategy::CpuDequant, LoadAs::Values(dtype)) => {
                for t in tensors {
                    let load = self.cpu_dequant(t, backend, dtype)?;
                    progress(&Progress::Bytes(t.n_bytes));
                    progress(&Progress::Tensor(&load));
                    report.tensors.push(load);
                }
            }
            (Strategy::CpuDequant, LoadAs::Native) => {
                return Err(LoadError::Options {
                    file: self.file.path().to_path_buf(),
                    reason: "the cpu-dequant strategy produces values; it cannot keep native \
                             blocks"
                        .into(),
                });
            }
        }
        report.total_time = start.elapsed();
        Ok(report)
    }

    /// Loads each device's share of `placement` onto its backend (`backends[i]` for
    /// `placement.devices[i]`), one thread per device, all at once. Returns one report per
    /// device. `progress` is called from those threads.
    pub fn load_placed(
        &self,
        backends: &[&dyn Backend],
        placement: &Placement,
        as_: LoadAs,
        opts: &PipelineOptions,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Vec<LoadReport>, LoadError> {
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
        let all = self.file.tensors();
        let results: Vec<Result<LoadReport, LoadError>> = std::thread::scope(|s| {
            let handles: Vec<_> = backends
                .iter()
                .zip(&placement.devices)
                .map(|(b, d)| {
                    let tensors: Vec<&TensorInfo> = d.tensors.iter().map(|&i| &all[i]).collect();
                    s.spawn(move || {
                        self.load_tensors(*b, &tensors, as_, opts, &mut |p| progress(p))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        results.into_iter().collect()
    }

    /// Dequantizes every tensor into host memory with the fast CPU path (the load when no GPU is
    /// present), and reports what was done. Returns each tensor's bytes in file order: its
    /// values as `dtype`, or for an integer tensor its bytes as the file stores them
    /// ([`LoadPath::Kept`]).
    pub fn load_all_to_host(
        &self,
        dtype: OutputDType,
        progress: &mut dyn FnMut(&TensorLoad),
    ) -> Result<(Vec<Vec<u8>>, LoadReport), LoadError> {
        let start = Instant::now();
        let mut report = LoadReport {
            device: "cpu".to_string(),
            ..Default::default()
        };
        let mut outputs = Vec::with_capacity(self.file.tensors().len());
        for t in self.file.tensors() {
            let t0 = Instant::now();
            let (bytes, path) = if t.ty.is_integer() {
                (self.tensor_bytes(t)?.into_owned(), LoadPath::Kept)
            } else {
                let values = self.dequantize_to_host(&t.name, CpuPath::Fast)?;
                (cpu::encode_as(&values, dtype), LoadPath::Cpu)
            };
            let load = self.record(
                t,
                LoadAs::Values(dtype).tensor_dtype(t),
                0,
                bytes.len() as u64,
                t0.elapsed(),
                path,
            );
            progress(&load);
            report.tensors.push(load);
            outputs.push(bytes);
        }
        report.total_time = start.elapsed();
        Ok((outputs, report))
    }

    /// A tensor already loaded onto a device as values of `dtype`, if cached.
    pub fn cached(
        &self,
        name: &str,
        dtype: OutputDType,
        backend: &dyn Backend,
    ) -> Option<Arc<DeviceTensor>> {
        self.cached_as(name, dtype.into(), backend)
    }

    /// A tensor already loaded onto a device as `as_`, if cached.
    pub fn cached_as(
        &self,
        name: &str,
        as_: LoadAs,
        backend: &dyn Backend,
    ) -> Option<Arc<DeviceTensor>> {
        self.cache
            .lock()
            .get(&cache_key(name, as_, backend))
            .cloned()
    }

    /// Drops every cached device tensor (frees their device memory once no one holds them).
    pub fn clear_cache(&self) {
        self.cache.lock().clear();
    }
}

/// Whether a device error means "this format's kernel cannot run here" (fallback applies) rather
/// than a device fault that a CPU fallback would not cure (out of memory, lost device).
pub(crate) fn is_kernel_failure(e: &GpuError) -> bool {
    matches!(
        e,
        GpuError::Compile { .. }
            | GpuError::CodeObject { .. }
            | GpuError::NoKernel { .. }
            | GpuError::Launch { .. }
    )
}

pub(crate) fn device_label(backend: &dyn Backend) -> String {
    backend.info().label()
}
