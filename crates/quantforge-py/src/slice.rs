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

/// A tensor's name, its rows and its columns, as Python passes them.
type NamedRegion = (String, (u64, u64), (u64, u64));

/// Regions of tensors, each `(name, rows, cols)` as in [`_get_region`] (columns at block
/// boundaries), loaded by one pipelined load on a GPU (the whole-file load's speed, reading
/// only the regions' bytes: a tensor-parallel rank's rows, or its columns of every row), one
/// after another on the CPU, as `dtype` if given, else as the file's output type. Each result
/// is shaped as [`_get_region`] shapes it.
#[pyfunction]
#[pyo3(signature = (file, regions, dtype=None))]
pub(crate) fn _load_regions(
    py: Python<'_>,
    file: &File,
    regions: Vec<NamedRegion>,
    dtype: Option<&str>,
) -> PyResult<Vec<Tensor>> {
    let as_ = file.dtype_or(dtype)?;
    let loader = file.loader()?;
    let backend = file.backend_here()?;
    let regions: Vec<(String, Region)> = regions
        .into_iter()
        .map(|(name, rows, cols)| {
            let (rows, cols) = (rows.0..rows.1, cols.0..cols.1);
            (name, Region { rows, cols })
        })
        .collect();
    py.detach(|| -> Result<Vec<Tensor>, Error> {
        let mut out = Vec::with_capacity(regions.len());
        let Some(b) = &backend else {
            for (name, region) in &regions {
                let t = loader.tensor(name)?;
                let (host, load) = loader.load_to_host(name, Some(region), as_)?;
                let shaped = with_dims(&t, host.shape.clone());
                out.push(host::to_tensor(
                    &loader, &shaped, host.data, host.dtype, &load.path,
                )?);
            }
            return Ok(out);
        };
        let opts = PipelineOptions::default();
        let loaded = loader.load_regions(b.as_ref(), &regions, as_, &opts, &mut |_| {})?;
        let rows = loaded.report.tensors.iter();
        for ((dt, row), (name, _)) in loaded.tensors.into_iter().zip(rows).zip(&regions) {
            let shaped = with_dims(&loader.tensor(name)?, dt.shape.clone());
            let t = Tensor::on_device(Arc::new(dt), b.clone(), &shaped, &row.path);
            out.push(t.map_err(|e| msg(&loader, e))?);
        }
        Ok(out)
    })
    .map_err(|e| e.into_py(py))
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
