//! [`Cursor`]: a read position in a header's bytes that never reads past their end. Every read
//! goes through [`Cursor::take`], which checks the length against the bytes left, and every
//! claimed count or length is checked against the bytes left *before* anything is allocated for
//! it. Arrays nest at most [`MAX_ARRAY_DEPTH`] levels; that bounds the only recursion.

use std::path::{Path, PathBuf};

use crate::{GgufError, MetaArray, MetaType, MetaValue};

type Result<T> = std::result::Result<T, GgufError>;

/// Deepest nesting of arrays inside one metadata value (an array of scalars is depth 1).
pub const MAX_ARRAY_DEPTH: usize = 64;

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

    pub(crate) fn path(&self) -> PathBuf {
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
    pub(crate) fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8]> {
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

    pub(crate) fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N]> {
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
    pub(crate) fn check_count(
        &self,
        count: u64,
        min_item_bytes: u64,
        field: &dyn Fn() -> String,
    ) -> Result<()> {
        self.check_count_within(count, min_item_bytes, self.buf.len() as u64, field)
    }

    /// Checks that `count` items of at least `min_item_bytes` each fit between the current
    /// position and `limit` (an absolute offset, at most the end of the buffer).
    pub(crate) fn check_count_within(
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

    /// A GGUF string's `u64` length, checked against the bytes left.
    fn string_len(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        let len = self.u64(field)?;
        if len > self.remaining() {
            return Err(GgufError::StringTooLong {
                path: self.path(),
                field: field(),
                len,
                remaining: self.remaining(),
            });
        }
        Ok(len)
    }

    /// A GGUF string, borrowed from the buffer.
    pub(crate) fn str_ref(&mut self, field: &dyn Fn() -> String) -> Result<&'a str> {
        let len = self.string_len(field)?;
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

    pub(crate) fn value_type(&mut self, field: &dyn Fn() -> String) -> Result<MetaType> {
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
    pub(crate) fn value(
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
    pub(crate) fn array_items(
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
                    let len = self.string_len(&|| format!("{}[{i}]", field()))?;
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
