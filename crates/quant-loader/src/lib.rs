//! # quant-loader
//!
//! [`GgufLoader`] joins the three other layers: the GGUF reader (`quant-gguf`) gives a tensor's
//! type, shape and bytes; the [registry](quant_core::registry()) gives the format that handles
//! the type; a [`Backend`] uploads the quantized bytes and runs the format's kernel. Nothing here
//! knows any format: there is no `match` on tensor types.
//!
//! Data flows one way: file → reader → registry → backend → [`DeviceTensor`].
//!
//! When a format's kernel cannot run on a device (no code object, compile or launch error), the
//! loader falls back to the CPU reference and uploads its result, logs a warning and counts it in
//! the [`LoadReport`]; with [`FallbackPolicy::Deny`] that is an error instead.
#![warn(missing_docs)]

mod error;
mod report;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quant_core::cpu::{self, CpuPath};
use quant_core::{OutputDType, QuantFormat};
use quant_gguf::{GgufFile, OpenOptions, TensorInfo};
use quant_gpu::{Backend, DeviceKind, DeviceTensor, GpuError};

pub use error::LoadError;
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
    /// Map the file (`true`, zero-copy) or read it into memory (`false`; safe against files
    /// truncated by another process while mapped).
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

type CacheKey = (String, OutputDType, DeviceKind, usize);

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
    /// still do that: `--no-mmap` is the safe choice for files that may change.)
    fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8], LoadError> {
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
        Ok(self.file.tensor_data(t))
    }

    /// The registered format of a tensor, or [`LoadError::Unsupported`].
    pub fn format_of(&self, t: &TensorInfo) -> Result<&'static dyn QuantFormat, LoadError> {
        quant_core::lookup(t.ty).ok_or_else(|| LoadError::Unsupported {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            ty: t.ty,
        })
    }

    fn elements(&self, t: &TensorInfo) -> Result<usize, LoadError> {
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

    fn gpu_err(&self, t: &TensorInfo, backend: &dyn Backend, source: GpuError) -> LoadError {
        LoadError::Gpu {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            device: device_label(backend),
            source,
        }
    }

    /// Dequantizes a tensor into host f32 with the chosen CPU path.
    pub fn dequantize_to_host(&self, name: &str, path: CpuPath) -> Result<Vec<f32>, LoadError> {
        let t = self.tensor(name)?;
        let format = self.format_of(t)?;
        let n = self.elements(t)?;
        let mut out = vec![0f32; n];
        cpu::dequantize(format, self.tensor_bytes(t)?, &mut out, path)
            .map_err(|e| self.core_err(t, e))?;
        Ok(out)
    }

    /// Loads one tensor onto `backend` as `dtype`: uploads its quantized bytes, expands them with
    /// the format's kernel, and caches the result (a second call returns the cached tensor).
    pub fn load_tensor_to_gpu(
        &self,
        name: &str,
        backend: &dyn Backend,
        dtype: OutputDType,
    ) -> Result<Arc<DeviceTensor>, LoadError> {
        self.load_tensor_reporting(name, backend, dtype)
            .map(|(t, _)| t)
    }

    /// Like [`GgufLoader::load_tensor_to_gpu`], also returning what was done.
    pub fn load_tensor_reporting(
        &self,
        name: &str,
        backend: &dyn Backend,
        dtype: OutputDType,
    ) -> Result<(Arc<DeviceTensor>, TensorLoad), LoadError> {
        let start = Instant::now();
        let t = self.tensor(name)?;
        let info = backend.info();
        let key = (t.name.clone(), dtype, info.kind, info.ordinal);
        if let Some(hit) = self.cache.lock().get(&key).cloned() {
            let load = self.record(t, dtype, 0, 0, start.elapsed(), LoadPath::Cached);
            return Ok((hit, load));
        }
        let format = self.format_of(t)?;
        let n = self.elements(t)?;
        let data = self.tensor_bytes(t)?;
        let out_bytes = n * dtype.size();
        let g = format.geometry();

        let (tensor, uploaded, path) = match format.kernel() {
            Some(spec) => {
                let n_blocks = (n / g.block_elems) as u64;
                let run = || -> Result<DeviceTensor, GpuError> {
                    let mut src = backend.alloc(data.len())?;
                    backend.upload(data, &mut src)?;
                    let mut dst = backend.alloc(out_bytes)?;
                    backend.dequantize(spec, g.block_elems, &src, n_blocks, &mut dst, dtype)?;
                    backend.synchronize()?;
                    Ok(DeviceTensor {
                        buffer: dst,
                        shape: t.dims.clone(),
                        dtype,
                    })
                };
                match run() {
                    Ok(dt) => (dt, data.len() as u64, LoadPath::Kernel),
                    Err(e) if is_kernel_failure(&e) => {
                        if self.options.fallback == FallbackPolicy::Deny {
                            return Err(self.gpu_err(t, backend, e));
                        }
                        tracing::warn!(
                            tensor = %t.name,
                            device = %device_label(backend),
                            "kernel for {} could not run ({e}); falling back to the CPU reference",
                            format.name()
                        );
                        let dt =
                            self.host_convert(t, format, n, backend, dtype, CpuPath::Reference)?;
                        (dt, out_bytes as u64, LoadPath::Fallback(e.to_string()))
                    }
                    Err(e) => return Err(self.gpu_err(t, backend, e)),
                }
            }
            None => {
                let dt = self.host_convert(t, format, n, backend, dtype, CpuPath::Fast)?;
                (dt, out_bytes as u64, LoadPath::HostConvert)
            }
        };
        let tensor = Arc::new(tensor);
        let tensor = self.cache.lock().entry(key).or_insert(tensor).clone();
        let load = self.record(t, dtype, uploaded, out_bytes as u64, start.elapsed(), path);
        Ok((tensor, load))
    }

    /// Dequantizes on the host, rounds to `dtype` and uploads the values.
    fn host_convert(
        &self,
        t: &TensorInfo,
        format: &'static dyn QuantFormat,
        n: usize,
        backend: &dyn Backend,
        dtype: OutputDType,
        path: CpuPath,
    ) -> Result<DeviceTensor, LoadError> {
        let mut values = vec![0f32; n];
        cpu::dequantize(format, self.tensor_bytes(t)?, &mut values, path)
            .map_err(|e| self.core_err(t, e))?;
        let bytes = cpu::encode_as(&values, dtype);
        drop(values);
        let upload = || -> Result<DeviceTensor, GpuError> {
            let mut dst = backend.alloc(bytes.len())?;
            backend.upload(&bytes, &mut dst)?;
            backend.synchronize()?;
            Ok(DeviceTensor {
                buffer: dst,
                shape: t.dims.clone(),
                dtype,
            })
        };
        upload().map_err(|e| self.gpu_err(t, backend, e))
    }

    fn record(
        &self,
        t: &TensorInfo,
        dtype: OutputDType,
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

    /// Loads every tensor onto `backend` as `dtype`, in file order, and reports what was done.
    /// The tensors stay in the loader's cache ([`GgufLoader::cached`]).
    pub fn load_all(
        &self,
        backend: &dyn Backend,
        dtype: OutputDType,
    ) -> Result<LoadReport, LoadError> {
        self.load_all_with_progress(backend, dtype, &mut |_| {})
    }

    /// [`GgufLoader::load_all`], calling `progress` after each tensor.
    pub fn load_all_with_progress(
        &self,
        backend: &dyn Backend,
        dtype: OutputDType,
        progress: &mut dyn FnMut(&TensorLoad),
    ) -> Result<LoadReport, LoadError> {
        let start = Instant::now();
        let mut report = LoadReport {
            device: device_label(backend),
            ..Default::default()
        };
        for t in self.file.tensors() {
            let (_, load) = self.load_tensor_reporting(&t.name, backend, dtype)?;
            progress(&load);
            report.tensors.push(load);
        }
        report.total_time = start.elapsed();
        Ok(report)
    }

    /// Dequantizes every tensor into host memory with the fast CPU path (the load when no GPU is
    /// present), and reports what was done. Returns the values in file order.
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
            let values = self.dequantize_to_host(&t.name, CpuPath::Fast)?;
            let bytes = cpu::encode_as(&values, dtype);
            let load = self.record(t, dtype, 0, bytes.len() as u64, t0.elapsed(), LoadPath::Cpu);
            progress(&load);
            report.tensors.push(load);
            outputs.push(bytes);
        }
        report.total_time = start.elapsed();
        Ok((outputs, report))
    }

    /// A tensor already loaded onto a device, if cached.
    pub fn cached(
        &self,
        name: &str,
        dtype: OutputDType,
        backend: &dyn Backend,
    ) -> Option<Arc<DeviceTensor>> {
        let info = backend.info();
        self.cache
            .lock()
            .get(&(name.to_string(), dtype, info.kind, info.ordinal))
            .cloned()
    }

    /// Drops every cached device tensor (frees their device memory once no one holds them).
    pub fn clear_cache(&self) {
        self.cache.lock().clear();
    }
}

/// Whether a device error means "this format's kernel cannot run here" (fallback applies) rather
/// than a device fault that a CPU fallback would not cure (out of memory, lost device).
fn is_kernel_failure(e: &GpuError) -> bool {
    matches!(
        e,
        GpuError::Compile { .. }
            | GpuError::CodeObject { .. }
            | GpuError::NoKernel { .. }
            | GpuError::Launch { .. }
    )
}

fn device_label(backend: &dyn Backend) -> String {
    let i = backend.info();
    format!("{}:{} ({})", i.kind, i.ordinal, i.name)
}
