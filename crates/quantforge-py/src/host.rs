//! Loads into host memory (the CPU device): a tensor at a time, in chunks of whole rows of
//! about [`CHUNK_BYTES`] of output, each run on this process's thread pool
//! ([`crate::process`]), with a check for Python signals before each chunk. So Ctrl-C stops a
//! load within one chunk's time however large the tensor, and a load holds its outputs plus
//! one chunk's scratch (its quantized bytes and f32 values), never a whole tensor's.

use pyo3::prelude::*;
use quantforge::core::cpu::HostValues;
use quantforge::gguf::TensorInfo;
use quantforge::gpu::TensorDType;
use quantforge::loader::{GgufLoader, HostData as Data, LoadAs, LoadPath, Region};

use crate::errors::Error;
use crate::process;
use crate::tensor::{Elem, HostData, Tensor};

/// Output bytes per chunk: tens of milliseconds of work on one core.
pub(crate) const CHUNK_BYTES: u64 = 16 << 20;

/// Called before each chunk; an error (a Python exception) stops the load.
pub(crate) type Interrupt<'a> = &'a (dyn Fn() -> Result<(), Error> + Sync);

/// Runs the Python signal handlers (on the main thread; elsewhere it does nothing): Ctrl-C
/// becomes `Err(KeyboardInterrupt)`. Takes the GIL for a moment.
pub(crate) fn check_signals() -> Result<(), Error> {
    Python::attach(|py| py.check_signals()).map_err(Error::Py)
}

fn msg(loader: &GgufLoader, e: String) -> Error {
    Error::Msg(format!("{}: {e}", loader.file().path().display()))
}

/// Tensor `t` of `loader` in host memory as `as_`: values (f32 as they are, f16/bf16 bits), the
/// blocks as bytes, or a kept integer tensor's values; loaded chunk by chunk, `interrupt`
/// checked before each chunk.
pub(crate) fn load(
    loader: &GgufLoader,
    t: &TensorInfo,
    as_: LoadAs,
    interrupt: Interrupt<'_>,
) -> Result<Tensor, Error> {
    let ne0 = t.dims.first().copied().unwrap_or(1);
    let rows: u64 = t.dims.iter().skip(1).product();
    let row_bytes = match as_ {
        LoadAs::Values(d) => ne0.saturating_mul(d.size() as u64),
        LoadAs::Native => t.n_bytes / rows.max(1),
    };
    let chunk_rows = (CHUNK_BYTES / row_bytes.max(1)).max(1);
    let mut parts = Parts::default();
    let mut start = 0u64;
    loop {
        interrupt()?;
        let end = rows.min(start.saturating_add(chunk_rows));
        let region = (chunk_rows < rows).then_some(Region {
            rows: start..end,
            cols: 0..ne0,
        });
        let (host, row) = process::install(|| loader.load_to_host(&t.name, region.as_ref(), as_))
            .map_err(|e| msg(loader, e))??;
        parts
            .push(
                host.data,
                host.dtype,
                row.path,
                region.is_some().then_some(t),
            )
            .map_err(|e| msg(loader, format!("tensor '{}': {e}", t.name)))?;
        start = end;
        if start >= rows {
            break;
        }
    }
    let (data, dtype, path) = parts.finish();
    to_tensor(loader, t, data, dtype, &path)
}

/// The chunks of one tensor, joined as they come.
#[derive(Default)]
struct Parts {
    data: Option<Data>,
    dtype: Option<TensorDType>,
    path: Option<LoadPath>,
}

impl Parts {
    /// Appends a chunk; `whole` is the tensor when it comes in more than one chunk, so that the
    /// first chunk's buffer is made large enough for all of them at once (an error, not an
    /// abort, when that memory cannot be had).
    fn push(
        &mut self,
        data: Data,
        dtype: TensorDType,
        path: LoadPath,
        whole: Option<&TensorInfo>,
    ) -> Result<(), String> {
        self.dtype = Some(dtype);
        self.path = Some(path);
        let Some(have) = &mut self.data else {
            self.data = Some(match whole {
                Some(t) => with_room_for(data, t)?,
                None => data,
            });
            return Ok(());
        };
        match (have, data) {
            (Data::Values(HostValues::F32(a)), Data::Values(HostValues::F32(b))) => {
                a.extend_from_slice(&b)
            }
            (Data::Values(HostValues::Bits16(a)), Data::Values(HostValues::Bits16(b))) => {
                a.extend_from_slice(&b)
            }
            (Data::Bytes(a), Data::Bytes(b)) => a.extend_from_slice(&b),
            _ => return Err("chunks of different kinds".into()),
        }
        Ok(())
    }

    fn finish(self) -> (Data, TensorDType, LoadPath) {
        let data = self.data.expect("at least one chunk is loaded");
        let dtype = self.dtype.expect("set with the data");
        (data, dtype, self.path.expect("set with the data"))
    }
}

/// `first`, the first chunk of tensor `t`, in a buffer with room for the whole tensor.
fn with_room_for(first: Data, t: &TensorInfo) -> Result<Data, String> {
    fn grown<T: Copy>(first: Vec<T>, total: u64) -> Result<Vec<T>, String> {
        let total = usize::try_from(total).map_err(|_| format!("{total} values do not fit"))?;
        let mut v = Vec::new();
        v.try_reserve_exact(total).map_err(|_| {
            let bytes = total as u64 * std::mem::size_of::<T>() as u64;
            format!("cannot allocate {bytes} bytes of host memory for the tensor")
        })?;
        v.extend_from_slice(&first);
        Ok(v)
    }
    Ok(match first {
        Data::Values(HostValues::F32(v)) => Data::Values(HostValues::F32(grown(v, t.n_elements)?)),
        Data::Values(HostValues::Bits16(v)) => {
            Data::Values(HostValues::Bits16(grown(v, t.n_elements)?))
        }
        Data::Bytes(b) => Data::Bytes(grown(b, t.n_bytes)?),
    })
}

/// The Python tensor of host data `data` of tensor `t`.
pub(crate) fn to_tensor(
    loader: &GgufLoader,
    t: &TensorInfo,
    data: Data,
    dtype: TensorDType,
    path: &LoadPath,
) -> Result<Tensor, Error> {
    let (data, elem) = match (data, dtype) {
        (Data::Values(HostValues::F32(v)), _) => (HostData::F32(v), Elem::F32),
        (Data::Values(HostValues::Bits16(v)), TensorDType::Values(d)) => {
            (HostData::U16(v), Elem::of_values(d))
        }
        // An integer tensor keeps its type, whatever was asked for (native included).
        (Data::Bytes(b), TensorDType::Native(ty)) if ty.is_integer() => {
            let elem = ty.geometry().and_then(|g| Elem::integer(g.block_bytes));
            let data = elem.and_then(|e| Some((HostData::integers(&b, e)?, e)));
            data.ok_or_else(|| {
                let why = format!(
                    "tensor '{}': {} bytes are not whole {ty} values",
                    t.name,
                    b.len()
                );
                msg(loader, why)
            })?
        }
        (Data::Bytes(b), _) => (HostData::U8(b), Elem::U8),
        (Data::Values(_), dtype) => {
            return Err(msg(
                loader,
                format!("tensor '{}': values as {dtype:?}", t.name),
            ))
        }
    };
    Tensor::host(data, t, elem, path).map_err(|e| msg(loader, e))
}
