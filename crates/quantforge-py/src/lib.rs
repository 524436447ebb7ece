//! # quantforge-py
//!
//! The extension module `quantforge._native` of the Python package `quantforge` (distributed as
//! `quantforge-gguf`). Two classes:
//!
//! - [`File`]: one GGUF file opened for one device (`cpu`, `cuda:N`) and one output type
//!   (`f32`, `f16`, `bf16`, `native`); its tensors' names, types and shapes, its metadata, and
//!   its tensors one by one (`get`) or all at once (`load_all`, the pipelined
//!   whole-model load on a GPU);
//! - [`Tensor`]: a loaded tensor, in host memory owned by Rust or in device memory, that leaves
//!   through DLPack (`__dlpack__`, `__dlpack_device__`) without a copy. Every export holds the
//!   tensor's storage until its consumer lets go, so memory is freed when the last holder (the
//!   `Tensor` object or any array made from it) is gone.
//!
//! Errors from the library are `quantforge.QuantforgeError` (a missing tensor is
//! `quantforge.MissingTensorError`, also a `KeyError`) carrying the Rust error's message, which
//! names the file, the tensor and the reason; bad arguments are `ValueError`.
//!
//! Shapes are in PyTorch's order: GGUF's `[ne0, ne1]` (innermost first) is `(ne1, ne0)`.
#![warn(missing_docs)]

mod backends;
mod errors;
mod file;
mod host;
mod meta;
mod ops;
mod process;
mod slice;
mod tensor;

use pyo3::prelude::*;

pub use errors::QuantforgeError;
pub use file::File;
pub use tensor::Tensor;

/// Bytes held right now by the storages of live tensors (host, device): a tensor's storage lives
/// as long as its `Tensor` object or any DLPack consumer (a numpy array, a torch tensor) holds
/// it. The leak tests read it.
#[pyfunction]
fn live_bytes() -> (u64, u64) {
    tensor::live_bytes()
}

/// Makes CUDA devices opened from now on load the cubins under `path`
/// (`<path>/<format>/sm_XX.cubin`) where one fits the device, and compile the other kernels with
/// NVRTC. The package calls it with the cubins its wheel ships.
#[pyfunction]
fn _set_prebuilt_cubins(path: std::path::PathBuf) {
    backends::set_prebuilt_cubins(path);
}

/// The extension module `quantforge._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Tensor>()?;
    m.add_class::<File>()?;
    m.add("QuantforgeError", py.get_type::<QuantforgeError>())?;
    m.add("MissingTensorError", errors::missing_tensor_type(py)?)?;
    m.add_function(wrap_pyfunction!(live_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(_set_prebuilt_cubins, m)?)?;
    m.add_function(wrap_pyfunction!(ops::ggml_type_info, m)?)?;
    m.add_function(wrap_pyfunction!(ops::_dequantize_host, m)?)?;
    m.add_function(wrap_pyfunction!(ops::_dequantize_cuda, m)?)?;
    m.add_function(wrap_pyfunction!(ops::_random_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(slice::_get_region, m)?)?;
    m.add_function(wrap_pyfunction!(slice::_region_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(slice::_load_regions, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
