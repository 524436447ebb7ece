//! The native side of `safe_open(...).get_slice(name)[...]`: a region of a tensor (rows, and
//! the values of each row in a column range), reading only the bytes of those rows and of the
//! blocks that cover the columns (the loader's planner decides which).
//!
//! In host memory a column range that cuts blocks is trimmed after dequantization here; on a
//! device the columns must start and end at block boundaries (the Python wrapper asks for the
//! covering blocks and trims with the framework's own ops).

use std::sync::Arc;

use pyo3::prelude::*;
use quantforge::gguf::TensorInfo;
use quantforge::loader::{GgufLoader, PipelineOptions, Region, Target};

use crate::errors::Error;
use crate::file::File;
use crate::host;
use crate::tensor::Tensor;

/// `rows` (flattened over every dimension but the first of ggml's) and `cols` (values of each
/// row) of tensor `name`, as `dtype` if given, else as the file's output type, on the file's
/// device. The result's shape is `(rows, cols)` in PyTorch order; with `dtype="native"` it is
/// the blocks, `(rows, bytes)`.
#[pyfunction]
#[pyo3(signature = (file, name, rows, cols, dtype=None))]
pub(crate) fn _get_region(
    py: Python<'_>,
    file: &File,
    name: &str,
    rows: (u64, u64),
    cols: (u64, u64),
    dtype: Option<&str>,
) -> PyResult<Tensor> {
    let as_ = file.dtype_or(dtype)?;
    let loader = file.loader()?;
    let backend = file.backend_here()?;
    let region = Region {
        rows: rows.0..rows.1,
        cols: cols.0..cols.1,
    };
    py.detach(|| -> Result<Tensor, Error> {
        let t = loader.tensor(name)?;
        let target = if backend.is_some() {
            Target::Device
        } else {
            Target::Host
        };
        let plan = loader.plan(name, as_, Some(&region), target)?;
        let shaped = with_dims(&t, plan.shape.clone());
        match &backend {
            Some(b) => {
                let (dt, load) = loader.load_region(name, Some(&region), b.as_ref(), as_)?;
                Tensor::on_device(Arc::new(dt), b.clone(), &shaped, &load.path)
                    .map_err(|e| msg(&loader, e))
            }
            None => {
                let (host, load) = loader.load_to_host(name, Some(&region), as_)?;
                host::to_tensor(&loader, &shaped, host.data, host.dtype, &load.path)
            }
        }
    })
    .map_err(|e| e.into_py(py))
}

/// Parts of tensors, each `(name, start, end)`: rows `start..end` of a tensor of two or more
/// dimensions (flattened as in [`_get_region`]), or values `start..end` of a one-dimensional
/// one, on block boundaries. All are loaded by one pipelined load on a GPU (the whole-file
/// load's speed, reading only the parts' bytes), one after another on the CPU, as `dtype` if
/// given, else as the file's output type. Each result has shape `(rows, row length)`, or
/// `(values,)` for one dimension.
#[pyfunction]
#[pyo3(signature = (file, parts, dtype=None))]
pub(crate) fn _load_parts(
    py: Python<'_>,
    file: &File,
    parts: Vec<(String, u64, u64)>,
    dtype: Option<&str>,
) -> PyResult<Vec<Tensor>> {
    let as_ = file.dtype_or(dtype)?;
    let loader = file.loader()?;
    let backend = file.backend_here()?;
    py.detach(|| -> Result<Vec<Tensor>, Error> {
        let infos = parts
            .iter()
            .map(|(name, start, end)| part_of(&loader, name, *start..*end))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut out = Vec::with_capacity(infos.len());
        match &backend {
            Some(b) => {
                let opts = PipelineOptions::default();
                let loaded = loader.load_parts(b.as_ref(), &infos, as_, &opts, &mut |_| {})?;
                let rows = loaded.report.tensors.iter();
                for ((dt, row), info) in loaded.tensors.into_iter().zip(rows).zip(&infos) {
                    let t = Tensor::on_device(Arc::new(dt), b.clone(), info, &row.path);
                    out.push(t.map_err(|e| msg(&loader, e))?);
                }
            }
            None => {
                let loaded = loader.load_parts_to_host(&infos, as_, &mut |_| {})?;
                let rows = loaded.report.tensors.iter();
                for ((ht, row), info) in loaded.tensors.into_iter().zip(rows).zip(&infos) {
                    out.push(host::to_tensor(
                        &loader, info, ht.data, ht.dtype, &row.path,
                    )?);
                }
            }
        }
        Ok(out)
    })
    .map_err(|e| e.into_py(py))
}

/// Part `range` of tensor `name` ([`TensorInfo::part`]), or an error naming the file, the
/// tensor and the range.
fn part_of(
    loader: &GgufLoader,
    name: &str,
    range: std::ops::Range<u64>,
) -> Result<TensorInfo, Error> {
    let t = loader.tensor(name)?;
    t.part(range.clone()).ok_or_else(|| {
        let unit = if t.dims.len() == 1 { "values" } else { "rows" };
        msg(
            loader,
            format!(
                "tensor '{name}': {unit} {range:?} are not a non-empty part of its {} {unit}{}",
                if t.dims.len() == 1 {
                    t.n_elements
                } else {
                    t.n_elements / t.dims[0]
                },
                if t.dims.len() == 1 {
                    " on block boundaries"
                } else {
                    ""
                }
            ),
        )
    })
}

/// `t` with the region's dimensions (ggml order), for the shape the result is given.
fn with_dims(t: &TensorInfo, dims: Vec<u64>) -> TensorInfo {
    let mut shaped = t.clone();
    shaped.n_elements = dims.iter().product();
    shaped.dims = dims;
    shaped
}

fn msg(loader: &GgufLoader, e: String) -> Error {
    Error::Msg(format!("{}: {e}", loader.file().path().display()))
}

/// File bytes a region of tensor `name` reads (`rows` flattened as in [`_get_region`], `cols`
/// values of each row): its rows' blocks that cover the columns.
#[pyfunction]
pub(crate) fn _region_bytes(
    file: &File,
    name: &str,
    rows: (u64, u64),
    cols: (u64, u64),
) -> PyResult<u64> {
    let loader = file.loader()?;
    let region = Region {
        rows: rows.0..rows.1,
        cols: cols.0..cols.1,
    };
    let as_ = quantforge::loader::LoadAs::Native;
    let plan = Python::attach(|py| {
        loader
            .plan(name, as_, Some(&region), Target::Host)
            .or_else(|_| {
                let f32_ = quantforge::core::OutputDType::F32.into();
                loader.plan(name, f32_, Some(&region), Target::Host)
            })
            .map_err(|e| Error::from(e).into_py(py))
    })?;
    Ok(plan.spans.total())
}
