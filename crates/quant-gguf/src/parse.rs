//! The GGUF header parser: a small bounded cursor and the header, metadata and tensor-info
//! readers built on it.
//!
//! Every read goes through [`Cursor::take`], which checks the length against the bytes left, and
//! every claimed count or length is checked against the bytes left *before* anything is
//! allocated for it. Arrays nest at most [`MAX_ARRAY_DEPTH`] levels; that bounds the only
//! recursion.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use quant_core::GgmlType;

use crate::table::{parse_tensor_infos, TensorTable};
use crate::{GgufError, MetaArray, MetaType, MetaValue};

/// Deepest nesting of arrays inside one metadata value (an array of scalars is depth 1).
pub const MAX_ARRAY_DEPTH: usize = 64;

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

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

/// A read position in a byte slice that never reads past its end.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], path: &'a Path) -> Self {
        Cursor { buf, pos: 0, path }
    }

    fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Current absolute offset.
    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left from the current position.
    pub(crate) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// The buffer from absolute offset `start` (at most the current position) to its end.
    pub(crate) fn bytes_from(&self, start: u64) -> &'a [u8] {
        let buf: &'a [u8] = self.buf;
        usize::try_from(start)
            .ok()
            .and_then(|s| buf.get(s..))
            .unwrap_or_default()
    }

    /// Takes `n` bytes, or reports `field` as cut short.
    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path(),
                field: field(),
                offset: self.pos(),
                needed: n,
                available: self.remaining(),
            });
        }
        // n <= remaining <= usize::MAX, so the cast is exact.
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Checks that `count` items of at least `min_item_bytes` each can fit in what is left.
    fn check_count(
        &self,
        count: u64,
        min_item_bytes: u64,
        field: &dyn Fn() -> String,
    ) -> Result<()> {
        self.check_count_within(count, min_item_bytes, self.buf.len() as u64, field)
    }

    /// Checks that `count` items of at least `min_item_bytes` each fit between the current
    /// position and `limit` (an absolute offset, at most the end of the buffer).
    fn check_count_within(
        &self,
        count: u64,
        min_item_bytes: u64,
        limit: u64,
        field: &dyn Fn() -> String,
    ) -> Result<()> {
        let available = limit.min(self.buf.len() as u64).saturating_sub(self.pos());
        match count.checked_mul(min_item_bytes) {
            Some(total) if total <= available => Ok(()),
            _ => Err(GgufError::CountTooLarge {
                path: self.path(),
                field: field(),
                count,
                min_item_bytes,
                remaining: available,
            }),
        }
    }

    /// A GGUF string: a `u64` length, then that many bytes of UTF-8.
    pub(crate) fn string(&mut self, field: &dyn Fn() -> String) -> Result<String> {
        self.str_ref(field).map(str::to_owned)
    }

    /// A GGUF string, borrowed from the buffer.
    pub(crate) fn str_ref(&mut self, field: &dyn Fn() -> String) -> Result<&'a str> {
        let len = self.u64(field)?;
        if len > self.remaining() {
            return Err(GgufError::StringTooLong {
                path: self.path(),
                field: field(),
                len,
                remaining: self.remaining(),
            });
        }
        let offset = self.pos();
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => Err(GgufError::InvalidUtf8 {
                path: self.path(),
                field: field(),
                offset,
            }),
        }
    }

    fn value_type(&mut self, field: &dyn Fn() -> String) -> Result<MetaType> {
        let id = self.u32(field)?;
        MetaType::from_u32(id).ok_or_else(|| GgufError::UnknownValueType {
            path: self.path(),
            field: field(),
            type_id: id,
        })
    }

    /// One value of type `ty`. `depth` counts the arrays already entered. `limit` is the
    /// absolute offset this value must end by so that the enclosing arrays' remaining elements
    /// still have room for their smallest encoding; an array's count is checked against it.
    fn value(
        &mut self,
        ty: MetaType,
        depth: usize,
        limit: u64,
        field: &dyn Fn() -> String,
    ) -> Result<MetaValue> {
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(u8::from_le_bytes(self.array(field)?)),
            MetaType::I8 => MetaValue::I8(i8::from_le_bytes(self.array(field)?)),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(field)?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(field)?)),
            MetaType::U32 => MetaValue::U32(u32::from_le_bytes(self.array(field)?)),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(field)?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(field)?)),
            MetaType::U64 => MetaValue::U64(u64::from_le_bytes(self.array(field)?)),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(field)?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(field)?)),
            MetaType::Bool => {
                let [b] = self.array(field)?;
                match b {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    byte => {
                        return Err(GgufError::InvalidBool {
                            path: self.path(),
                            field: field(),
                            byte,
                        })
                    }
                }
            }
            MetaType::String => MetaValue::String(self.string(field)?),
            MetaType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        path: self.path(),
                        field: field(),
                        limit: MAX_ARRAY_DEPTH,
                    });
                }
                let elem_type = self.value_type(field)?;
                let count = self.u64(field)?;
                let min = elem_type.min_encoded_len();
                self.check_count_within(count, min, limit, field)?;
                MetaValue::Array(self.array_items(elem_type, count, depth, limit, field)?)
            }
        })
    }

    /// The `count` elements of an array of `elem_type` (count already checked against `limit`),
    /// stored compactly: fixed-size elements are copied as one slice, strings packed into one
    /// buffer sized by a first pass over their lengths, inner arrays reserved exactly. Nothing
    /// reallocates, and what is kept is at most twice the bytes the elements take in the file.
    fn array_items(
        &mut self,
        elem_type: MetaType,
        count: u64,
        depth: usize,
        limit: u64,
        field: &dyn Fn() -> String,
    ) -> Result<MetaArray> {
        let min = elem_type.min_encoded_len();
        // Fixed-size elements: `count * min` bytes, which the count check says are there.
        macro_rules! fixed {
            ($t:ty) => {{
                let bytes = self.take(count * min, field)?;
                let v: Vec<$t> = bytes
                    .chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of the type's size")))
                    .collect();
                MetaArray::from(v)
            }};
        }
        Ok(match elem_type {
            MetaType::U8 => MetaArray::from(self.take(count, field)?.to_vec()),
            MetaType::I8 => fixed!(i8),
            MetaType::U16 => fixed!(u16),
            MetaType::I16 => fixed!(i16),
            MetaType::U32 => fixed!(u32),
            MetaType::I32 => fixed!(i32),
            MetaType::F32 => fixed!(f32),
            MetaType::U64 => fixed!(u64),
            MetaType::I64 => fixed!(i64),
            MetaType::F64 => fixed!(f64),
            MetaType::Bool => {
                let bytes = self.take(count, field)?;
                let mut v = Vec::with_capacity(bytes.len());
                for (i, &b) in bytes.iter().enumerate() {
                    match b {
                        0 => v.push(false),
                        1 => v.push(true),
                        byte => {
                            return Err(GgufError::InvalidBool {
                                path: self.path(),
                                field: format!("{}[{i}]", field()),
                                byte,
                            });
                        }
                    }
                }
                MetaArray::from(v)
            }
            MetaType::String => {
                // First pass: the lengths, each checked against the bytes left (and the last
                // ones against `limit`, as for any element), to size the packed buffer exactly.
                let start = self.pos;
                let mut text_len = 0u64;
                for i in 0..count {
                    let elem_field = || format!("{}[{i}]", field());
                    let len = self.u64(&elem_field)?;
                    if len > self.remaining() {
                        return Err(GgufError::StringTooLong {
                            path: self.path(),
                            field: elem_field(),
                            len,
                            remaining: self.remaining(),
                        });
                    }
                    self.pos += len as usize;
                    text_len += len;
                }
                self.pos = start;
                // n + n ends + text <= 8 + the array's bytes in the file.
                let n = count as usize;
                let mut packed = Vec::with_capacity(if n == 0 {
                    0
                } else {
                    8 + 8 * n + text_len as usize
                });
                if n > 0 {
                    packed.extend_from_slice(&count.to_le_bytes());
                    packed.resize(8 + 8 * n, 0);
                }
                let mut end = 0u64;
                for i in 0..n {
                    let elem_field = || format!("{}[{i}]", field());
                    let len = self.u64(&elem_field)?;
                    let offset = self.pos();
                    let bytes = self.take(len, &elem_field)?;
                    if std::str::from_utf8(bytes).is_err() {
                        return Err(GgufError::InvalidUtf8 {
                            path: self.path(),
                            field: elem_field(),
                            offset,
                        });
                    }
                    packed.extend_from_slice(bytes);
                    end += len;
                    packed[8 + 8 * i..16 + 8 * i].copy_from_slice(&end.to_le_bytes());
                }
                MetaArray::from_packed_strings(packed.into_boxed_slice())
            }
            MetaType::Array => {
                // The count fits in the bytes up to `limit`, which the enclosing arrays leave
                // to this one: the claims of all arrays being parsed at once never add up to
                // more than the file (plus one element per level), so reserving exactly is
                // bounded by a fixed multiple of the file size, and nothing reallocates.
                let mut values = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let elem_field = || format!("{}[{i}]", field());
                    // Elements after this one need at least `min` bytes each; no underflow, as
                    // `count * min <= limit - pos` was checked.
                    let elem_limit = limit - (count - 1 - i) * min;
                    match self.value(MetaType::Array, depth + 1, elem_limit, &elem_field)? {
                        MetaValue::Array(a) => values.push(a),
                        _ => unreachable!("an array value is an array"),
                    }
                }
                MetaArray::from(values)
            }
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
