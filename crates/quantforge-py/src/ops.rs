//! The native side of `quantforge.torch.dequantize`: blocks a framework already holds, given
//! as addresses and lengths, expanded on the CPU or on the caller's CUDA stream. The Python
//! wrapper checks dtypes, contiguity, devices and shapes, and keeps the tensors alive for the
//! call; these functions check the sizes against the format's geometry
//! (`quantforge::loader::blocks`) and run.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use quantforge::core::{GgmlType, OutputDType};
use quantforge::gpu::{DeviceKind, DeviceSpec};
use quantforge::loader::blocks::{self, DeviceBlocks};
use quantforge::loader::plan::{self, PlanError};

use crate::backends;
use crate::errors::Error;

/// `(id, name, block_elems, block_bytes, kind)` of a ggml type given by name (`"Q4_K"`, any
/// case) or id; `kind` is `"quantized"` (a format with a kernel), `"float"` (a format without
/// one: F32, F16, BF16, F64), `"integer"` (ids, not weights) or `"unsupported"` (no linked
/// format: Q8_1, Q8_K). Unknown types raise `ValueError`.
#[pyfunction]
pub(crate) fn ggml_type_info(
    ty: &Bound<'_, PyAny>,
) -> PyResult<(u32, String, usize, usize, &'static str)> {
    let t = match ty.extract::<u32>() {
        Ok(id) => GgmlType(id),
        Err(_) => {
            let name: String = ty.extract().map_err(|_| {
                PyValueError::new_err(format!("ggml type {ty}: expected a name or an id"))
            })?;
            GgmlType::from_name(name.trim())
                .ok_or_else(|| PyValueError::new_err(format!("unknown ggml type '{name}'")))?
        }
    };
    let g = t
        .geometry()
        .ok_or_else(|| PyValueError::new_err(format!("unknown ggml type id {}", t.0)))?;
    let kind = match plan::value_format(t) {
        Ok(f) if f.kernel().is_some() => "quantized",
        Ok(_) => "float",
        Err(PlanError::Integer(_)) => "integer",
        Err(_) => "unsupported",
    };
    Ok((t.0, t.to_string(), g.block_elems, g.block_bytes, kind))
}

fn output_dtype(name: &str) -> PyResult<OutputDType> {
    OutputDType::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "dtype '{name}': expected float32, float16 or bfloat16"
        ))
    })
}

/// Expands `src_len` bytes of blocks of type `type_id` at host address `src` into `dst_len`
/// bytes at host address `dst`, as `elements` values of `dtype`, on all cores, without the
/// GIL.
///
/// The caller (the package's own wrapper) passes the addresses of live, contiguous buffers of
/// those sizes that nothing else writes during the call.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn _dequantize_host(
    py: Python<'_>,
    src: usize,
    src_len: usize,
    type_id: u32,
    elements: u64,
    dst: usize,
    dst_len: usize,
    dtype: &str,
) -> PyResult<()> {
    let dtype = output_dtype(dtype)?;
    if (src == 0 && src_len > 0) || (dst == 0 && dst_len > 0) {
        return Err(PyValueError::new_err("a null buffer address"));
    }
    let run = || -> Result<(), Error> {
        // SAFETY: the wrapper's contract above: live, contiguous, unaliased for the call.
        let (s, d) = unsafe {
            (
                slice_or_empty(src as *const u8, src_len),
                slice_or_empty_mut(dst as *mut u8, dst_len),
            )
        };
        Ok(blocks::dequantize_host_blocks(
            GgmlType(type_id),
            elements,
            s,
            dtype,
            d,
        )?)
    };
    py.detach(run).map_err(|e| e.into_py(py))
}

/// # Safety
/// `p` points at `len` readable bytes when `len > 0`.
unsafe fn slice_or_empty<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: forwarded.
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

/// # Safety
/// `p` points at `len` writable bytes no one else uses when `len > 0`.
unsafe fn slice_or_empty_mut<'a>(p: *mut u8, len: usize) -> &'a mut [u8] {
    if len == 0 {
        &mut []
    } else {
        // SAFETY: forwarded.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }
}

/// Queues the expansion of `src_len` bytes of blocks of type `type_id` at device address `src`
/// into `dst_len` bytes at device address `dst` (`elements` values of `dtype`) on CUDA device
/// `device`, on the caller's stream `stream` (a `cudaStream_t` as an integer), and returns
/// without waiting. The device's backend is opened on first use and shared; the format's
/// kernel is loaded on the first call, so a warm-up call before a CUDA graph capture keeps
/// module loading out of the capture.
///
/// The caller (the package's own wrapper) passes memory of that device that stays allocated
/// until the work queued on `stream` has run.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn _dequantize_cuda(
    py: Python<'_>,
    src: u64,
    src_len: usize,
    type_id: u32,
    elements: u64,
    dst: u64,
    dst_len: usize,
    dtype: &str,
    device: usize,
    stream: usize,
) -> PyResult<()> {
    let dtype = output_dtype(dtype)?;
    let run = || -> Result<(), Error> {
        let spec = DeviceSpec::Gpu(DeviceKind::Cuda, device);
        let backend = backends::open(spec)
            .map_err(|e| Error::Msg(format!("opening cuda:{device}: {e}")))?
            .ok_or_else(|| Error::Msg(format!("cuda:{device} opened as the CPU")))?;
        let mem = DeviceBlocks {
            src,
            src_len,
            dst,
            dst_len,
        };
        let ty = GgmlType(type_id);
        // SAFETY: the wrapper's contract above; the stream is PyTorch's current stream of
        // this device, in the primary context the backend shares.
        unsafe { blocks::dequantize_device_blocks(&*backend, ty, elements, mem, dtype, stream) }?;
        Ok(())
    };
    py.detach(run).map_err(|e| e.into_py(py))
}

/// `n_blocks` random blocks of type `type_id` whose scales are finite (the format makes them so),
/// from `seed`: test and benchmark data for every format, as `bytes`. With `scale`, every f16
/// scale field the format declares ([`QuantFormat::f16_scale_offsets`]) holds that value
/// instead, for weights of a tame size.
///
/// [`QuantFormat::f16_scale_offsets`]: quantforge::core::QuantFormat::f16_scale_offsets
#[pyfunction]
#[pyo3(signature = (type_id, n_blocks, seed, scale=None))]
pub(crate) fn _random_blocks(
    py: Python<'_>,
    type_id: u32,
    n_blocks: usize,
    seed: u64,
    scale: Option<f32>,
) -> PyResult<Py<pyo3::types::PyBytes>> {
    let format = plan::value_format(GgmlType(type_id))
        .map_err(|e| PyValueError::new_err(format!("ggml type {type_id}: {e}")))?;
    let bb = format.geometry().block_bytes;
    let len = n_blocks
        .checked_mul(bb)
        .ok_or_else(|| PyValueError::new_err("too many blocks"))?;
    let mut bytes = quantforge::core::random_bytes(len, seed);
    format.make_scales_finite(&mut bytes);
    if let Some(s) = scale {
        let bits = half::f16::from_f32(s).to_le_bytes();
        for block in bytes.chunks_exact_mut(bb) {
            for &off in format.f16_scale_offsets() {
                block[off..off + 2].copy_from_slice(&bits);
            }
        }
    }
    Ok(pyo3::types::PyBytes::new(py, &bytes).unbind())
}
