//! A tensor's size and place: its element and byte counts from its dimensions and type, and the
//! check that its data lies inside the file. Shared by the header parser, the tensor table and
//! the writer.

use std::path::Path;

use quant_core::GgmlType;

use crate::GgufError;

type Result<T> = std::result::Result<T, GgufError>;

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Element and byte counts of a tensor, after checking its dimensions and type.
///
/// Shared with the writer, which applies the same rules to what it is given.
pub(crate) fn tensor_size(
    path: &Path,
    name: &str,
    index: u64,
    dims: &[u64],
    ty: GgmlType,
) -> Result<(u64, u64)> {
    let p = || path.to_path_buf();
    let t = || name.to_owned();
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            path: p(),
            tensor: t(),
            tensor_index: index,
            n_dims: dims.len() as u32,
        });
    }
    if let Some(dim) = dims.iter().position(|&d| d == 0) {
        return Err(GgufError::ZeroDimension {
            path: p(),
            tensor: t(),
            tensor_index: index,
            index: dim,
            dims: dims.to_vec(),
        });
    }
    // ggml holds dimensions and element counts as i64.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| GgufError::ElementCountOverflow {
            path: p(),
            tensor: t(),
            tensor_index: index,
            dims: dims.to_vec(),
        })?;
    if !ty.is_known() {
        return Err(GgufError::UnknownTensorType {
            path: p(),
            tensor: t(),
            tensor_index: index,
            type_id: ty.0,
        });
    }
    if ty.is_removed() {
        return Err(GgufError::RemovedTensorType {
            path: p(),
            tensor: t(),
            tensor_index: index,
            ty,
        });
    }
    let g = ty.geometry().ok_or_else(|| GgufError::UnknownGeometry {
        path: p(),
        tensor: t(),
        tensor_index: index,
        ty,
    })?;
    let (block_elems, block_bytes) = (g.block_elems as u64, g.block_bytes as u64);
    if dims[0] % block_elems != 0 {
        return Err(GgufError::RowNotBlockMultiple {
            path: p(),
            tensor: t(),
            tensor_index: index,
            row_len: dims[0],
            ty,
            block_elems: g.block_elems,
        });
    }
    // dims[0] is a multiple of the block, so the element count is too.
    let n_bytes = (n_elements / block_elems)
        .checked_mul(block_bytes)
        .ok_or_else(|| GgufError::ByteCountOverflow {
            path: p(),
            tensor: t(),
            tensor_index: index,
            n_elements,
            ty,
        })?;
    Ok((n_elements, n_bytes))
}

/// The absolute start of a tensor's data, after checking that its `n_bytes` bytes from
/// `offset` (relative to the data section at `data_offset`) lie inside a file of `file_len`
/// bytes. `name` names the tensor in errors.
pub(crate) fn tensor_span(
    path: &Path,
    name: &str,
    (offset, n_bytes): (u64, u64),
    data_offset: u64,
    file_len: u64,
) -> Result<u64> {
    let p = || path.to_path_buf();
    let start = match data_offset.checked_add(offset) {
        Some(s) if s < file_len => s,
        _ => {
            return Err(GgufError::TensorBeyondFile {
                path: p(),
                tensor: name.to_owned(),
                start: data_offset.saturating_add(offset),
                file_len,
            })
        }
    };
    match start.checked_add(n_bytes) {
        Some(end) if end <= file_len => Ok(start),
        end => Err(GgufError::TensorDataTruncated {
            path: p(),
            tensor: name.to_owned(),
            start,
            n_bytes,
            end: end.unwrap_or(u64::MAX),
            file_len,
        }),
    }
}
