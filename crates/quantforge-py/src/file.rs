//! [`File`]: one GGUF file opened for one device and one output type.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use quantforge::gguf::TensorInfo;
use quantforge::gpu::{Backend, DeviceSpec};
use quantforge::loader::{
    FallbackPolicy, GgufLoader, LoadAs, LoaderOptions, PipelineOptions, Progress,
};

use crate::backends;
use crate::errors::{Error, QuantforgeError};
use crate::host::{self, check_signals, Interrupt};
use crate::meta::Arrays;
use crate::tensor::Tensor;

/// Parses an output type: `f32`/`float32`/`float`, `f16`/`float16`/`half`,
/// `bf16`/`bfloat16`, or `native` (the quantized blocks as bytes).
pub(crate) fn parse_dtype(s: &str) -> PyResult<LoadAs> {
    LoadAs::from_name(s.trim()).ok_or_else(|| {
        PyValueError::new_err(format!(
            "dtype '{s}': expected f32/float32, f16/float16, bf16/bfloat16 or native"
        ))
    })
}

/// A GGUF file opened for loading onto one device (`"cpu"`, `"cuda:N"`, `"auto"`) as one type
/// (`"f32"`, `"f16"`, `"bf16"`, `"native"`). Tensor names, types, shapes and the metadata are
/// read from the header; `get` loads one tensor, `load_all` all of them.
///
/// Bad files, missing tensors and device failures raise `QuantforgeError` (a missing tensor:
/// `MissingTensorError`, also a `KeyError`) whose message names the file and the tensor; bad
/// arguments raise `ValueError`.
#[pyclass(frozen, module = "quantforge._native")]
pub struct File {
    path: PathBuf,
    loader: Mutex<Option<Arc<GgufLoader>>>,
    backend: Option<Arc<dyn Backend>>,
    dtype: LoadAs,
}

impl File {
    pub(crate) fn loader(&self) -> PyResult<Arc<GgufLoader>> {
        self.loader.lock().clone().ok_or_else(|| {
            QuantforgeError::new_err(format!("{}: the file is closed", self.path.display()))
        })
    }

    fn info(&self, loader: &GgufLoader, name: &str) -> Result<TensorInfo, Error> {
        Ok(loader.tensor(name)?)
    }

    /// The file's backend, unless this process was forked from the one that opened it (the
    /// GPU driver does not survive a fork: using it here could hang).
    pub(crate) fn backend_here(&self) -> PyResult<Option<Arc<dyn Backend>>> {
        match (&self.backend, crate::process::gpu_used_by_parent()) {
            (Some(_), Some(parent)) => Err(QuantforgeError::new_err(format!(
                "{}: {}",
                self.path.display(),
                crate::process::forked_gpu_error(parent)
            ))),
            (b, _) => Ok(b.clone()),
        }
    }

    pub(crate) fn dtype_or(&self, dtype: Option<&str>) -> PyResult<LoadAs> {
        dtype.map(parse_dtype).unwrap_or(Ok(self.dtype))
    }
}

/// Loads tensor `t` of `loader` as `as_`: onto `backend`, or (no backend) into host memory,
/// `interrupt` checked between chunks.
fn load_one(
    loader: &GgufLoader,
    backend: Option<&Arc<dyn Backend>>,
    t: &TensorInfo,
    as_: LoadAs,
    interrupt: Interrupt<'_>,
) -> Result<Tensor, Error> {
    match backend {
        Some(b) => {
            let (dt, load) = loader.load_tensor(&t.name, b.as_ref(), as_)?;
            Tensor::on_device(Arc::new(dt), b.clone(), t, &load.path).map_err(|e| msg(loader, e))
        }
        None => host::load(loader, t, as_, interrupt),
    }
}

fn msg(loader: &GgufLoader, e: String) -> Error {
    Error::Msg(format!("{}: {e}", loader.file().path().display()))
}

/// Every tensor of `loader` into host memory, in file order, `interrupt` checked between
/// chunks; `bar` advances by each tensor's bytes in the file.
fn load_all_host(
    loader: &GgufLoader,
    as_: LoadAs,
    bar: Option<&ProgressBar>,
    interrupt: Interrupt<'_>,
) -> Result<Vec<(String, Tensor)>, Error> {
    let tensors = loader.file().tensors();
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        out.push((t.name.clone(), host::load(loader, &t, as_, interrupt)?));
        if let Some(bar) = bar {
            bar.inc(t.n_bytes);
        }
    }
    Ok(out)
}

/// Every tensor of `loader` onto `backend` by the pipelined load. The progress callback (on
/// this thread) checks for Python signals every few milliseconds; a signal's exception sets
/// the load's cancellation flag, so the load stops at its readers' next batch, frees what it
/// took, and the exception is returned.
fn load_all_device(
    loader: &GgufLoader,
    backend: &Arc<dyn Backend>,
    as_: LoadAs,
    bar: Option<&ProgressBar>,
) -> Result<Vec<(String, Tensor)>, Error> {
    let cancelled = AtomicBool::new(false);
    let mut raised: Option<Error> = None;
    let mut last_check = Instant::now();
    let mut on_progress = |p: &Progress| {
        if let (Some(bar), Progress::Bytes(n)) = (bar, p) {
            bar.inc(*n);
        }
        if raised.is_none() && last_check.elapsed() >= Duration::from_millis(20) {
            last_check = Instant::now();
            if let Err(e) = check_signals() {
                cancelled.store(true, Ordering::Relaxed);
                raised = Some(e);
            }
        }
    };
    let opts = PipelineOptions::default();
    let loaded =
        loader.load_with_cancel(backend.as_ref(), as_, &opts, &mut on_progress, &cancelled);
    if let Some(e) = raised {
        return Err(e); // what was loaded (or the load's error) is dropped: all is freed
    }
    let loaded = loaded?;
    let rows = loaded.report.tensors.into_iter();
    let tensors = loader.file().tensors();
    let mut out = Vec::with_capacity(tensors.len());
    for ((dt, row), t) in loaded.tensors.into_iter().zip(rows).zip(tensors) {
        let tensor = Tensor::on_device(Arc::new(dt), backend.clone(), &t, &row.path)
            .map_err(|e| msg(loader, e))?;
        out.push((t.name.clone(), tensor));
    }
    Ok(out)
}

/// A progress bar over `total` bytes on stderr (drawn only when stderr is a terminal).
fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix} {percent:>3}%|{bar:25}| {binary_bytes}/{binary_total_bytes} \
         [{elapsed}<{eta}, {binary_bytes_per_sec}]",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("█▉▊▋▌▍▎▏ ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

#[pymethods]
impl File {
    /// Opens `path` (a `str` or `os.PathLike`) for loading onto `device` (`"cpu"`, `"cuda:N"`,
    /// `"hip:N"`, `"auto"`) as `dtype` (`"f32"`, `"f16"`, `"bf16"`, `"native"`). The file is
    /// read with positioned reads; with `mmap=True` it is mapped instead (as fast, but a file
    /// truncated by another process while it is read kills the interpreter with SIGBUS).
    #[new]
    #[pyo3(signature = (path, device="cpu", dtype="f32", mmap=false))]
    fn new(py: Python<'_>, path: PathBuf, device: &str, dtype: &str, mmap: bool) -> PyResult<Self> {
        let spec: DeviceSpec = device
            .trim()
            .parse()
            .map_err(|e| PyValueError::new_err(format!("device '{device}': {e}")))?;
        let as_ = parse_dtype(dtype)?;
        let opened = py.detach(|| -> Result<_, Error> {
            let loader = GgufLoader::open_with(
                &path,
                LoaderOptions {
                    mmap,
                    fallback: FallbackPolicy::Allow,
                },
            )?;
            let backend = backends::open(spec).map_err(|e| {
                Error::Msg(format!(
                    "{}: opening device '{device}': {e}",
                    path.display()
                ))
            })?;
            Ok((loader, backend))
        });
        let (loader, backend) = opened.map_err(|e| e.into_py(py))?;
        Ok(File {
            path,
            loader: Mutex::new(Some(Arc::new(loader))),
            backend,
            dtype: as_,
        })
    }

    /// The path as given.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The device tensors are loaded onto: `"cpu"`, `"cuda:N"` or `"hip:N"`.
    #[getter]
    fn device(&self) -> String {
        match &self.backend {
            None => "cpu".into(),
            Some(b) => format!("{}:{}", b.info().kind, b.info().ordinal),
        }
    }

    /// The output type: `"f32"`, `"f16"`, `"bf16"` or `"native"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.loader.lock().is_none()
    }

    /// The GGUF format version (2 or 3).
    #[getter]
    fn version(&self) -> PyResult<u32> {
        Ok(self.loader()?.file().version())
    }

    /// Tensor names, in file order.
    fn keys(&self) -> PyResult<Vec<String>> {
        let loader = self.loader()?;
        Ok(loader.file().tensor_names().map(str::to_owned).collect())
    }

    /// The metadata: GGUF key -> `str`, `int`, `float` or `bool`; arrays of numbers or booleans
    /// as compact arrays (a numpy array when numpy can be imported, else an `array.array`, or
    /// a `memoryview` of format `?` for booleans), arrays of strings as lists of `str`, arrays
    /// of arrays as lists. In file order.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let loader = self.loader()?;
        let arrays = Arrays::new(py)?;
        let d = PyDict::new(py);
        for (k, v) in loader.file().metadata() {
            d.set_item(k, arrays.value(v)?)?;
        }
        Ok(d)
    }

    /// The tensor's type in the file (`"Q4_K"`, `"F16"`, `"I32"`, ...).
    fn tensor_type(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        let loader = self.loader()?;
        let t = self.info(&loader, name).map_err(|e| e.into_py(py))?;
        Ok(t.ty.to_string())
    }

    /// The tensor's shape in PyTorch order (its dimensions reversed: GGUF's `[ne0, ne1]` is
    /// `(ne1, ne0)`), as its values have it whatever the output type.
    fn tensor_shape<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyTuple>> {
        let loader = self.loader()?;
        let t = self.info(&loader, name).map_err(|e| e.into_py(py))?;
        PyTuple::new(py, t.dims.iter().rev())
    }

    /// Loads tensor `name` (as `dtype` if given, else as the file's output type) and returns
    /// it as a `Tensor`. The GIL is released while loading (on the CPU, Ctrl-C is seen between
    /// chunks of rows).
    #[pyo3(signature = (name, dtype=None))]
    fn get(&self, py: Python<'_>, name: &str, dtype: Option<&str>) -> PyResult<Tensor> {
        let as_ = self.dtype_or(dtype)?;
        let loader = self.loader()?;
        let backend = self.backend_here()?;
        py.detach(|| {
            let t = loader.tensor(name)?;
            load_one(&loader, backend.as_ref(), &t, as_, &check_signals)
        })
        .map_err(|e| e.into_py(py))
    }

    /// Loads every tensor (as `dtype` if given, else as the file's output type) and returns
    /// `[(name, Tensor)]` in file order. On a GPU this is the pipelined whole-model load; on
    /// the CPU each tensor is dequantized on all cores, in chunks of rows. With
    /// `progress=True` a progress bar (bytes of the file) is drawn on stderr when it is a
    /// terminal. The GIL is released while loading; Python signals are checked every few
    /// milliseconds, so Ctrl-C stops the load (`KeyboardInterrupt`) and frees what it took.
    #[pyo3(signature = (progress=false, dtype=None))]
    fn load_all(
        &self,
        py: Python<'_>,
        progress: bool,
        dtype: Option<&str>,
    ) -> PyResult<Vec<(String, Tensor)>> {
        let as_ = self.dtype_or(dtype)?;
        let loader = self.loader()?;
        let backend = self.backend_here()?;
        let label = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        py.detach(|| -> Result<Vec<(String, Tensor)>, Error> {
            let total: u64 = loader.file().tensors().map(|t| t.n_bytes).sum();
            let bar = progress.then(|| progress_bar(total, &label));
            let out = match &backend {
                Some(b) => load_all_device(&loader, b, as_, bar.as_ref())?,
                None => load_all_host(&loader, as_, bar.as_ref(), &check_signals)?,
            };
            if let Some(bar) = bar {
                bar.finish();
            }
            Ok(out)
        })
        .map_err(|e| e.into_py(py))
    }

    /// Closes the file: later calls raise `QuantforgeError`. Tensors already loaded stay valid.
    fn close(&self) {
        self.loader.lock().take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.loader()?.file().tensor_count())
    }

    fn __contains__(&self, name: &str) -> PyResult<bool> {
        Ok(self.loader()?.file().tensor(name).is_some())
    }

    fn __repr__(&self) -> String {
        format!(
            "File({:?}, device={:?}, dtype={:?}{})",
            self.path.display().to_string(),
            self.device(),
            self.dtype.name(),
            if self.closed() { ", closed" } else { "" }
        )
    }
}
