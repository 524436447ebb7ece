//! [`Tensor`]: a loaded tensor as Python sees it, and the one object DLPack consumers
//! (`torch.from_dlpack`, `numpy.from_dlpack`, CuPy, JAX) take it from.
//!
//! Its memory is a [`Storage`] behind an `Arc`: host memory owned by Rust (a `Vec` of the
//! element type, so alignment is right; the loader's f32 vector kept as it is) or a device
//! tensor together with the backend it lives on. Every DLPack export puts a clone of that
//! `Arc` in the managed tensor's context, so the memory is freed when the last of the `Tensor`
//! object and its consumers lets go.

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dlpark::ffi::{DLDataType, DLDataTypeCode, DLDevice, DLDeviceType};
use dlpark::ffi::{DLManagedTensor, DLManagedTensorVersioned};
use dlpark::metadata::Dynamic;
use dlpark::python::{export_dlpack, CudaStreamRequest, DlpackExporter, ExportAbi, ExportRequest};
use dlpark::{DlpackFlags, Managed, ManagedTensorBase};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use quantforge::core::{GgmlType, OutputDType};
use quantforge::gguf::TensorInfo;
use quantforge::gpu::{Backend, DeviceKind, DeviceTensor, TensorDType};
use quantforge::loader::LoadPath;

use crate::errors::QuantforgeError;
use crate::process;

static LIVE_HOST: AtomicU64 = AtomicU64::new(0);
static LIVE_DEVICE: AtomicU64 = AtomicU64::new(0);

/// Bytes held by live storages: (host, device).
pub(crate) fn live_bytes() -> (u64, u64) {
    (
        LIVE_HOST.load(Ordering::SeqCst),
        LIVE_DEVICE.load(Ordering::SeqCst),
    )
}

/// Element type of a tensor as consumers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    F32,
    F16,
    Bf16,
    /// Quantized blocks as bytes (`dtype="native"`).
    U8,
    I8,
    I16,
    I32,
    I64,
}

impl Elem {
    /// NumPy / PyTorch spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Elem::F32 => "float32",
            Elem::F16 => "float16",
            Elem::Bf16 => "bfloat16",
            Elem::U8 => "uint8",
            Elem::I8 => "int8",
            Elem::I16 => "int16",
            Elem::I32 => "int32",
            Elem::I64 => "int64",
        }
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Elem::U8 | Elem::I8 => 1,
            Elem::F16 | Elem::Bf16 | Elem::I16 => 2,
            Elem::F32 | Elem::I32 => 4,
            Elem::I64 => 8,
        }
    }

    fn dl(self) -> DLDataType {
        let (code, bits) = match self {
            Elem::F32 => (DLDataTypeCode::FLOAT, 32),
            Elem::F16 => (DLDataTypeCode::FLOAT, 16),
            Elem::Bf16 => (DLDataTypeCode::BFLOAT, 16),
            Elem::U8 => (DLDataTypeCode::UINT, 8),
            Elem::I8 => (DLDataTypeCode::INT, 8),
            Elem::I16 => (DLDataTypeCode::INT, 16),
            Elem::I32 => (DLDataTypeCode::INT, 32),
            Elem::I64 => (DLDataTypeCode::INT, 64),
        };
        DLDataType::scalar(code, bits)
    }

    /// The values of an output type.
    pub(crate) fn of_values(d: OutputDType) -> Elem {
        match d {
            OutputDType::F32 => Elem::F32,
            OutputDType::F16 => Elem::F16,
            OutputDType::Bf16 => Elem::Bf16,
        }
    }

    /// The signed integer type of `bytes` bytes: how an integer tensor (I8 … I64, one element
    /// per block) is seen, by its element size rather than by a match on its ggml type.
    pub(crate) fn integer(bytes: usize) -> Option<Elem> {
        match bytes {
            1 => Some(Elem::I8),
            2 => Some(Elem::I16),
            4 => Some(Elem::I32),
            8 => Some(Elem::I64),
            _ => None,
        }
    }
}

/// Host memory owned by Rust, typed so that its alignment suits its elements.
#[derive(Clone, Debug)]
pub(crate) enum HostData {
    /// f32 values (the loader's vector, kept as it is).
    F32(Vec<f32>),
    /// f16 or bf16 bit patterns.
    U16(Vec<u16>),
    /// Quantized blocks.
    U8(Vec<u8>),
    /// I8 values.
    I8(Vec<i8>),
    /// I16 values.
    I16(Vec<i16>),
    /// I32 values.
    I32(Vec<i32>),
    /// I64 values.
    I64(Vec<i64>),
}

impl HostData {
    fn ptr(&self) -> *const c_void {
        match self {
            HostData::F32(v) => v.as_ptr().cast(),
            HostData::U16(v) => v.as_ptr().cast(),
            HostData::U8(v) => v.as_ptr().cast(),
            HostData::I8(v) => v.as_ptr().cast(),
            HostData::I16(v) => v.as_ptr().cast(),
            HostData::I32(v) => v.as_ptr().cast(),
            HostData::I64(v) => v.as_ptr().cast(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            HostData::F32(v) => std::mem::size_of_val(v.as_slice()),
            HostData::U16(v) => std::mem::size_of_val(v.as_slice()),
            HostData::U8(v) => v.len(),
            HostData::I8(v) => v.len(),
            HostData::I16(v) => std::mem::size_of_val(v.as_slice()),
            HostData::I32(v) => std::mem::size_of_val(v.as_slice()),
            HostData::I64(v) => std::mem::size_of_val(v.as_slice()),
        }
    }

    /// Little-endian bytes as values of `elem` (`None` if they are not whole values).
    fn from_le_bytes(bytes: Vec<u8>, elem: Elem) -> Option<HostData> {
        fn read<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Option<Vec<T>> {
            let whole = bytes.len().is_multiple_of(N);
            whole.then(|| {
                let v = bytes.chunks_exact(N);
                v.map(|c| f(c.try_into().expect("chunks of N bytes")))
                    .collect()
            })
        }
        match elem {
            Elem::F32 => read(&bytes, f32::from_le_bytes).map(HostData::F32),
            Elem::F16 | Elem::Bf16 => read(&bytes, u16::from_le_bytes).map(HostData::U16),
            Elem::U8 => Some(HostData::U8(bytes)),
            _ => HostData::integers(&bytes, elem),
        }
    }

    /// An integer tensor's little-endian bytes as values of `elem` (one of the integer types).
    pub(crate) fn integers(bytes: &[u8], elem: Elem) -> Option<HostData> {
        fn read<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunks of N bytes")))
                .collect()
        }
        if !bytes.len().is_multiple_of(elem.size()) {
            return None;
        }
        Some(match elem {
            Elem::I8 => HostData::I8(read(bytes, i8::from_le_bytes)),
            Elem::I16 => HostData::I16(read(bytes, i16::from_le_bytes)),
            Elem::I32 => HostData::I32(read(bytes, i32::from_le_bytes)),
            Elem::I64 => HostData::I64(read(bytes, i64::from_le_bytes)),
            _ => return None,
        })
    }
}

/// Where a tensor's bytes are.
enum Place {
    Host(HostData),
    Device {
        // Declared first: dropped (freed) before the backend reference goes.
        tensor: Arc<DeviceTensor>,
        backend: Arc<dyn Backend>,
    },
}

/// A tensor's memory, counted in [`live_bytes`] from creation to drop.
pub(crate) struct Storage {
    /// Dropped by hand: device memory is left alone in a process forked from the one that
    /// made it (the driver's state there is the parent's copy, and freeing through it could
    /// hang or fail).
    place: ManuallyDrop<Place>,
    counted: u64,
    /// The process that made it.
    pid: u32,
}

impl Storage {
    fn new(place: Place) -> Arc<Storage> {
        let counted = match &place {
            Place::Host(h) => {
                let n = h.bytes() as u64;
                LIVE_HOST.fetch_add(n, Ordering::SeqCst);
                n
            }
            Place::Device { tensor, .. } => {
                let n = tensor.buffer.len() as u64;
                LIVE_DEVICE.fetch_add(n, Ordering::SeqCst);
                n
            }
        };
        Arc::new(Storage {
            place: ManuallyDrop::new(place),
            counted,
            pid: process::pid(),
        })
    }

    /// Whether this is device memory made by another process (this one was forked from it).
    fn inherited_device_memory(&self) -> bool {
        matches!(*self.place, Place::Device { .. }) && self.pid != process::pid()
    }

    fn data_ptr(&self) -> u64 {
        match &*self.place {
            Place::Host(h) => h.ptr() as u64,
            Place::Device { tensor, .. } => tensor.device_ptr(),
        }
    }

    fn capacity(&self) -> usize {
        match &*self.place {
            Place::Host(h) => h.bytes(),
            Place::Device { tensor, .. } => tensor.buffer.len(),
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let counter = match *self.place {
            Place::Host(_) => &LIVE_HOST,
            Place::Device { .. } => &LIVE_DEVICE,
        };
        counter.fetch_sub(self.counted, Ordering::SeqCst);
        if !self.inherited_device_memory() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.place) };
        }
    }
}

/// PyTorch-order shape of tensor `t` seen as `elem`: its dimensions reversed, or for quantized
/// blocks (`U8`) `(rows, row_bytes)` where a row is `ne0` elements.
fn torch_shape(t: &TensorInfo, elem: Elem) -> Vec<i64> {
    let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
    if elem != Elem::U8 {
        return dims.into_iter().rev().collect();
    }
    // The reader checked that ne0 is a whole number of blocks and that the sizes fit.
    let g =
        t.ty.geometry()
            .expect("the reader admits only types with a geometry");
    let row_bytes = t.dims[0] / g.block_elems as u64 * g.block_bytes as u64;
    let rows: u64 = t.dims[1..].iter().product();
    vec![rows as i64, row_bytes as i64]
}

/// A loaded tensor: in host memory owned by quantforge, or on a GPU. Hand it to
/// `torch.from_dlpack`, `numpy.from_dlpack` (CPU), `cupy.from_dlpack` or
/// `jax.dlpack.from_dlpack`: no copy is made, and the memory is freed when the last of this
/// object and the arrays made from it is gone.
///
/// Shapes are in PyTorch order (GGUF's `[ne0, ne1]` is `(ne1, ne0)`); quantized blocks
/// (`dtype="native"`) are a `uint8` tensor of shape `(rows, row_bytes)`; integer tensors keep
/// their own type.
#[pyclass(frozen, module = "quantforge._native")]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<i64>,
    elem: Elem,
    ggml_type: GgmlType,
    /// How it was made (the loader's `LoadPath` label, with the reason of a fallback).
    path: String,
}

impl Tensor {
    fn new(
        storage: Arc<Storage>,
        shape: Vec<i64>,
        elem: Elem,
        ty: GgmlType,
    ) -> Result<Self, String> {
        let elems = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(u64::try_from(d).ok()?));
        let need = elems.and_then(|n| n.checked_mul(elem.size() as u64));
        match need {
            Some(n) if n <= storage.capacity() as u64 => Ok(Tensor {
                storage,
                shape,
                elem,
                ggml_type: ty,
                path: String::new(),
            }),
            _ => Err(format!(
                "a {} tensor of shape {shape:?} does not fit its {} bytes",
                elem.name(),
                storage.capacity()
            )),
        }
    }

    /// A tensor in host memory: `data` holds tensor `t`'s values as `elem`s (`U16` data holds
    /// `F16` or `Bf16` bits), or its blocks (`U8`).
    pub(crate) fn host(
        data: HostData,
        t: &TensorInfo,
        elem: Elem,
        path: &LoadPath,
    ) -> Result<Self, String> {
        let shape = torch_shape(t, elem);
        Self::new(Storage::new(Place::Host(data)), shape, elem, t.ty)
            .map(|x| x.made_by(path))
            .map_err(|e| format!("tensor '{}': {e}", t.name))
    }

    fn made_by(mut self, path: &LoadPath) -> Self {
        self.path = match path {
            LoadPath::Fallback(why) => format!("fallback: {why}"),
            p => p.label().to_ascii_lowercase(),
        };
        self
    }

    /// A tensor on `backend`'s device, as the loader made it for tensor `t`.
    pub(crate) fn on_device(
        tensor: Arc<DeviceTensor>,
        backend: Arc<dyn Backend>,
        t: &TensorInfo,
        path: &LoadPath,
    ) -> Result<Self, String> {
        let elem = match tensor.dtype {
            TensorDType::Values(d) => Elem::of_values(d),
            TensorDType::Native(ty) if ty.is_integer() => ty
                .geometry()
                .and_then(|g| Elem::integer(g.block_bytes))
                .ok_or_else(|| {
                    format!("tensor '{}': integer type {ty} has no element size", t.name)
                })?,
            TensorDType::Native(_) => Elem::U8,
        };
        let shape = torch_shape(t, elem);
        Self::new(
            Storage::new(Place::Device { tensor, backend }),
            shape,
            elem,
            t.ty,
        )
        .map(|x| x.made_by(path))
        .map_err(|e| format!("tensor '{}': {e}", t.name))
    }

    fn dl_device(&self) -> DLDevice {
        match &*self.storage.place {
            Place::Host(_) => DLDevice::CPU,
            Place::Device { tensor, .. } => match tensor.device() {
                (DeviceKind::Cuda, o) => DLDevice::cuda(o as i32),
                (DeviceKind::Hip, o) => DLDevice {
                    device_type: DLDeviceType::ROCM,
                    device_id: o as i32,
                },
            },
        }
    }

    /// A fresh managed tensor of the chosen ABI whose context holds the storage, with `flags`
    /// (the versioned ABI only).
    fn managed<M: ManagedTensorBase>(&self, flags: DlpackFlags) -> PyResult<Managed<M>> {
        let mut init = Dynamic::compact(self.shape.clone())
            .initialize_as::<M>(self.storage.clone())
            .map_err(|e| PyValueError::new_err(format!("DLPack export: {e}")))?;
        init.set_data(self.storage.data_ptr() as *mut c_void)
            .set_device(self.dl_device())
            .set_dtype(self.elem.dl());
        // SAFETY: the only flag ever passed is IS_COPIED, for a copy made for this export alone
        // (`copy_to`), whose storage nothing else holds once the copy's `Tensor` is dropped.
        unsafe { init.set_flags_unchecked(flags) };
        // SAFETY: the data pointer is the storage's, which the context (an Arc clone) keeps
        // alive until the consumer's deleter runs; shape and compact strides were written by
        // dlpark and match the storage's size (checked in Tensor::new).
        Ok(unsafe { init.finish() })
    }

    /// A copy of this tensor in new memory, on DLPack device `to` (its own if `None`): within
    /// the host or one GPU, or from a GPU to the host. Other devices are a `BufferError`.
    fn copy_to(&self, to: Option<DLDevice>) -> PyResult<Tensor> {
        let here = self.dl_device();
        let to = to.unwrap_or(here);
        let failed = |e: quantforge::gpu::GpuError| {
            QuantforgeError::new_err(format!("DLPack copy of a tensor on {}: {e}", self.device()))
        };
        let place = match &*self.storage.place {
            Place::Host(h) if to == here => Place::Host(h.clone()),
            Place::Device { tensor, backend } if to == here => {
                let mut buffer = backend.alloc(tensor.buffer.len()).map_err(failed)?;
                backend.copy(&tensor.buffer, &mut buffer).map_err(failed)?;
                let copy = DeviceTensor {
                    buffer,
                    shape: tensor.shape.clone(),
                    dtype: tensor.dtype,
                };
                Place::Device {
                    tensor: Arc::new(copy),
                    backend: backend.clone(),
                }
            }
            Place::Device { tensor, backend } if to == DLDevice::CPU => {
                let bytes = tensor.download(backend.as_ref()).map_err(failed)?;
                let data = HostData::from_le_bytes(bytes, self.elem).ok_or_else(|| {
                    QuantforgeError::new_err("DLPack copy: the device bytes are not whole values")
                })?;
                Place::Host(data)
            }
            _ => {
                return Err(PyBufferError::new_err(format!(
                    "cannot copy a tensor on {} to DLPack device ({}, {}): quantforge copies \
                     within a device and from a GPU to the CPU; load the file onto that device",
                    self.device(),
                    to.device_type.0,
                    to.device_id
                )))
            }
        };
        Ok(Tensor {
            storage: Storage::new(place),
            shape: self.shape.clone(),
            elem: self.elem,
            ggml_type: self.ggml_type,
            path: self.path.clone(),
        })
    }
}

impl DlpackExporter for Tensor {
    fn device(&self) -> DLDevice {
        self.dl_device()
    }

    fn flags(&self) -> DlpackFlags {
        DlpackFlags::empty()
    }

    fn prepare_export(&self, _py: Python<'_>, request: &ExportRequest<'_>) -> PyResult<()> {
        let Place::Device { tensor, backend } = &*self.storage.place else {
            return Ok(());
        };
        let stream = match tensor.device().0 {
            DeviceKind::Cuda => match request.cuda_stream()? {
                // The protocol's default for CUDA is the legacy default stream.
                CudaStreamRequest::Omitted | CudaStreamRequest::LegacyDefault => Some(1),
                CudaStreamRequest::NoSync => None,
                CudaStreamRequest::PerThreadDefault => Some(2),
                CudaStreamRequest::Pointer(p) => Some(p),
            },
            // ROCm: None or 0 is the default stream, -1 asks for nothing, else a stream.
            DeviceKind::Hip => match request.stream() {
                None => Some(0),
                Some(s) => match s.extract::<isize>() {
                    Ok(-1) => None,
                    Ok(v) if v >= 0 => Some(v as usize),
                    _ => {
                        return Err(PyValueError::new_err(
                            "ROCm DLPack stream must be -1, 0 or a stream pointer",
                        ))
                    }
                },
            },
        };
        if let Some(stream) = stream {
            // SAFETY: DLPack's contract: the consumer passes a live stream of this device (or a
            // sentinel), and vouches for it.
            unsafe { backend.make_stream_wait(stream) }
                .map_err(|e| QuantforgeError::new_err(format!("DLPack export: {e}")))?;
        }
        Ok(())
    }

    fn export_legacy(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensor>> {
        self.managed(DlpackFlags::empty())
    }

    fn export_versioned(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensorVersioned>> {
        self.managed(DlpackFlags::empty())
    }
}

#[pymethods]
impl Tensor {
    /// DLPack export (the Python array API's protocol): a capsule holding this tensor's memory
    /// without a copy. On a GPU, the consumer's `stream` is made to wait for the load (omitted:
    /// CUDA's legacy default stream; `-1`: no ordering); `max_version` >= 1 selects the
    /// versioned ABI. `copy=True` exports a copy (flagged `IS_COPIED` in the versioned ABI);
    /// `dl_device` another device than the tensor's makes a copy there (the CPU, from a GPU)
    /// unless `copy=False`, which then raises `BufferError`, as does a device quantforge cannot
    /// copy to. In a process forked from the one that loaded a GPU tensor, the tensor cannot be
    /// exported (`BufferError`).
    #[pyo3(signature = (stream=None, *, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(u32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        if self.storage.inherited_device_memory() {
            return Err(PyBufferError::new_err(process::forked_gpu_error(
                self.storage.pid,
            )));
        }
        // `stream=None` passed explicitly means "omitted" too.
        let stream = stream.filter(|s| !s.is_none());
        let request = ExportRequest::parse(stream.as_ref(), max_version, dl_device, copy)?;
        let elsewhere = request.device().is_some_and(|d| d != self.dl_device());
        if copy != Some(true) && !(elsewhere && copy.is_none()) {
            return export_dlpack(self, py, request);
        }
        let to = request.device();
        let copied = py.detach(|| self.copy_to(to))?;
        let request = ExportRequest::parse(stream.as_ref(), max_version, None, None)?;
        copied.prepare_export(py, &request)?;
        Ok(match request.abi() {
            ExportAbi::Versioned => copied
                .managed::<DLManagedTensorVersioned>(DlpackFlags::IS_COPIED)?
                .into_pyobject(py)?
                .unbind(),
            ExportAbi::Legacy => copied
                .managed::<DLManagedTensor>(DlpackFlags::empty())?
                .into_pyobject(py)?
                .unbind(),
        })
    }

    /// `(device_type, device_id)`: `(1, 0)` for the CPU, `(2, N)` for CUDA device N, `(10, N)`
    /// for ROCm device N.
    fn __dlpack_device__(&self) -> (u32, i32) {
        let d = self.dl_device();
        (d.device_type.0, d.device_id)
    }

    /// Shape in PyTorch order (GGUF's `[ne0, ne1]` is `(ne1, ne0)`); `(rows, row_bytes)` for
    /// quantized blocks.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// Element type: `"float32"`, `"float16"`, `"bfloat16"`, `"uint8"` (quantized blocks),
    /// `"int8"` … `"int64"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.elem.name()
    }

    /// The tensor's type in the file (`"Q4_K"`, `"F16"`, `"I32"`, ...).
    #[getter]
    fn ggml_type(&self) -> String {
        self.ggml_type.to_string()
    }

    /// `"cpu"`, `"cuda:N"` or `"hip:N"`.
    #[getter]
    fn device(&self) -> String {
        match &*self.storage.place {
            Place::Host(_) => "cpu".into(),
            Place::Device { tensor, .. } => {
                let (kind, o) = tensor.device();
                format!("{kind}:{o}")
            }
        }
    }

    /// Bytes of the tensor's elements.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product::<u64>() * self.elem.size() as u64
    }

    /// How the tensor was made: `"kernel"` (expanded by its format's GPU kernel), `"host"`
    /// (a float type converted on the host), `"native"` (blocks kept), `"kept"` (an integer
    /// tensor), `"cpu"` (dequantized into host memory), or `"fallback: <why>"` when the GPU
    /// kernel could not run and the CPU reference's values were uploaded instead.
    #[getter]
    fn load_path(&self) -> &str {
        &self.path
    }

    /// Address of the first element (a host address, or a device address on a GPU).
    #[getter]
    fn data_ptr(&self) -> u64 {
        self.storage.data_ptr()
    }

    fn __repr__(&self) -> String {
        format!(
            "Tensor(shape={:?}, dtype={}, ggml_type={}, device={})",
            self.shape,
            self.elem.name(),
            self.ggml_type,
            self.device()
        )
    }
}
