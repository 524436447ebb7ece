//! The GGUF header parser: the header, its metadata and its tensor infos, read through a
//! [`Cursor`](crate::cursor::Cursor) (which bounds every read and count by the bytes left) and
//! checked; the tensor infos become a [`TensorTable`](crate::table::TensorTable).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use crate::cursor::Cursor;
use crate::table::{parse_tensor_infos, TensorTable};
use crate::{GgufError, MetaValue};

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// Largest `general.alignment` accepted (64 KiB, the largest common page size, ARM64's and
/// POWER's). ggml accepts any power of two; real files use 32 to 4096. The bound keeps a tiny
/// file from making a tool pad its output to gigabytes.
pub const MAX_ALIGNMENT: u32 = 1 << 16;

/// Whether `a` is an alignment quantforge accepts: a power of two from 1 to [`MAX_ALIGNMENT`].
pub(crate) fn alignment_ok(a: u32) -> bool {
    a.is_power_of_two() && a <= MAX_ALIGNMENT
}

/// The magic bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Smallest possible encoding of a metadata pair: an empty key (8), a type (4), a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: empty name (8), n_dims (4), one dim (8), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

type Result<T> = std::result::Result<T, GgufError>;

/// Everything the header says, checked.
pub(crate) struct Header {
    pub version: u32,
    pub alignment: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub meta_index: HashMap<String, usize>,
    pub tensors: TensorTable,
    /// Where the tensor infos lie in the file: the section the table's positions count from.
    pub infos: Range<u64>,
    pub data_offset: u64,
}

/// Parses and checks the header of a GGUF file held whole in `buf`.
pub(crate) fn parse_header_in_memory(buf: &[u8], path: &Path) -> Result<Header> {
    parse_header(buf, buf.len() as u64, path)
}

/// Parses and checks the header of a GGUF file of `file_len` bytes whose first bytes are `buf`
/// (a prefix of the file, or all of it).
///
/// The header must lie inside `buf`: every count and length is checked against the bytes of
/// `buf`, so a prefix too short for the header fails with [`GgufError::Truncated`],
/// [`GgufError::CountTooLarge`] or [`GgufError::StringTooLong`] (see
/// [`bytes_wanted`]). Tensor placement is checked against `file_len`, the real length of
/// the file. With the whole file (`buf.len() == file_len`) every error is final.
pub(crate) fn parse_header(buf: &[u8], file_len: u64, path: &Path) -> Result<Header> {
    debug_assert!(
        buf.len() as u64 <= file_len,
        "the prefix is longer than the file"
    );
    let mut c = Cursor::new(buf, path);
    let p = || path.to_path_buf();

    // Magic. A short file that starts like "GGUF" is a cut-short GGUF; anything else is not one.
    let head = &buf[..buf.len().min(4)];
    if head != &MAGIC[..head.len()] {
        return Err(GgufError::BadMagic {
            path: p(),
            found: head.to_vec(),
        });
    }
    c.take(4, &|| "magic".into())?;

    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        v if v > 0xffff && (1..=0xffff).contains(&v.swap_bytes()) => {
            return Err(GgufError::BigEndian {
                path: p(),
                swapped: v.swap_bytes(),
            })
        }
        v => {
            return Err(GgufError::UnsupportedVersion {
                path: p(),
                version: v,
            })
        }
    }

    let tensor_count = c.u64(&|| "tensor_count".into())?;
    let kv_count = c.u64(&|| "kv_count".into())?;
    c.check_count(kv_count, MIN_KV_BYTES, &|| "kv_count".into())?;
    c.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, &|| {
        "tensor_count".into()
    })?;

    // Metadata.
    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut meta_index = HashMap::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        if let Some(reason) = crate::key_problem(&key) {
            return Err(GgufError::BadKey {
                path: p(),
                index: i,
                key,
                reason,
            });
        }
        let field = || key.clone();
        let ty = c.value_type(&field)?;
        let value = c.value(ty, 0, buf.len() as u64, &field)?;
        if meta_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { path: p(), key });
        }
        meta_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match meta_index.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => match metadata[i].1 {
            MetaValue::U32(a) if alignment_ok(a) => a,
            MetaValue::U32(a) => {
                return Err(GgufError::BadAlignment {
                    path: p(),
                    value: a,
                })
            }
            ref other => {
                return Err(GgufError::AlignmentNotU32 {
                    path: p(),
                    found: other.type_of(),
                })
            }
        },
    };

    // Tensor infos, checked one by one as far as they can be without the data offset.
    let infos_start = c.pos();
    let tensors = parse_tensor_infos(&mut c, tensor_count, path)?;
    let header_end = c.pos();

    // The data section starts at the end of the header, rounded up to the alignment.
    let align = u64::from(alignment);
    let data_offset = header_end.div_ceil(align) * align;
    let infos = c.bytes_from(infos_start);
    tensors.check_placement(infos, path, data_offset, align, file_len)?;

    Ok(Header {
        version,
        alignment,
        metadata,
        meta_index,
        tensors,
        infos: infos_start..header_end,
        data_offset,
    })
}

/// Whether a header parse of a *prefix* of `have` bytes that failed with `e` may succeed, or
/// fail differently, with more of the file, and if so the fewest bytes that could get it past
/// where it stopped: for the errors that come from running into the end of the bytes given.
/// Every other error depends only on bytes already read, and a check that passes on a prefix
/// passes on any longer one, so it is the error the whole file gives (`None`).
pub(crate) fn bytes_wanted(e: &GgufError, have: u64) -> Option<u64> {
    match *e {
        GgufError::Truncated { offset, needed, .. } => Some(offset.saturating_add(needed)),
        // `remaining` counts from the position to the limit the count had to fit by, which
        // lies a fixed distance before the end of the bytes given.
        GgufError::CountTooLarge {
            count,
            min_item_bytes,
            remaining,
            ..
        } => Some(
            (have.saturating_sub(remaining)).saturating_add(count.saturating_mul(min_item_bytes)),
        ),
        GgufError::StringTooLong { len, remaining, .. } => {
            Some(have.saturating_sub(remaining).saturating_add(len))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::tensor_size;
    use crate::MetaType;
    use quant_core::GgmlType;

    fn path() -> &'static Path {
        Path::new("unit.gguf")
    }

    #[test]
    fn cursor_refuses_to_read_past_the_end() {
        let buf = [1u8, 0, 0];
        let mut c = Cursor::new(&buf, path());
        let e = c.u32(&|| "x".into()).unwrap_err();
        assert!(
            matches!(
                e,
                GgufError::Truncated {
                    needed: 4,
                    available: 3,
                    ..
                }
            ),
            "{e}"
        );
        // A failed read consumes nothing.
        assert_eq!(c.remaining(), 3);
    }

    #[test]
    fn huge_array_fails_before_allocating() {
        // Array of 2^60 u8 with 3 bytes behind it.
        let mut buf = Vec::new();
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&(1u64 << 60).to_le_bytes());
        buf.extend_from_slice(&[0, 0, 0]);
        let mut c = Cursor::new(&buf, path());
        let e = c
            .value(MetaType::Array, 0, buf.len() as u64, &|| "k".into())
            .unwrap_err();
        assert!(
            matches!(e, GgufError::CountTooLarge { count, .. } if count == 1 << 60),
            "{e}"
        );
    }

    #[test]
    fn count_times_size_overflow_is_caught() {
        let c = Cursor::new(&[], path());
        assert!(matches!(
            c.check_count(u64::MAX, 8, &|| "k".into()),
            Err(GgufError::CountTooLarge { .. })
        ));
        assert!(c.check_count(0, 8, &|| "k".into()).is_ok());
    }

    #[test]
    fn tensor_size_rules() {
        let q4k = GgmlType::Q4_K;
        assert_eq!(
            tensor_size(path(), "t", 0, &[256, 3], q4k).unwrap(),
            (768, 3 * 144)
        );
        assert_eq!(
            tensor_size(path(), "t", 0, &[5], GgmlType::F16).unwrap(),
            (5, 10)
        );
        assert!(matches!(
            tensor_size(path(), "t", 0, &[255], q4k),
            Err(GgufError::RowNotBlockMultiple { row_len: 255, .. })
        ));
        assert!(matches!(
            tensor_size(path(), "t", 0, &[1 << 32, 1 << 32], GgmlType::F32),
            Err(GgufError::ElementCountOverflow { .. })
        ));
        assert!(matches!(
            tensor_size(path(), "t", 0, &[1 << 62], GgmlType::F32),
            Err(GgufError::ByteCountOverflow { .. })
        ));
        assert!(matches!(
            tensor_size(path(), "t", 0, &[1, 0], GgmlType::F32),
            Err(GgufError::ZeroDimension { index: 1, .. })
        ));
        assert!(matches!(
            tensor_size(path(), "t", 0, &[1; 5], GgmlType::F32),
            Err(GgufError::BadDimCount { n_dims: 5, .. })
        ));
        assert!(matches!(
            tensor_size(path(), "t", 0, &[32], GgmlType(4)),
            Err(GgufError::RemovedTensorType { .. })
        ));
        assert!(matches!(
            tensor_size(path(), "t", 0, &[32], GgmlType(1000)),
            Err(GgufError::UnknownTensorType { type_id: 1000, .. })
        ));
        // Every live type has a geometry now (NVFP4 included), so `UnknownGeometry` is only
        // reachable if quant-core drops one; NVFP4 sizes like any other.
        assert_eq!(
            tensor_size(path(), "t", 0, &[64], GgmlType::NVFP4).unwrap(),
            (64, 36)
        );
    }
}
