//! Metadata values: [`MetaType`], [`MetaValue`] and [`MetaArray`].

use std::fmt;

/// A GGUF metadata value type id, as stored (a little-endian `u32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MetaType {
    /// `u8`
    U8 = 0,
    /// `i8`
    I8 = 1,
    /// `u16`
    U16 = 2,
    /// `i16`
    I16 = 3,
    /// `u32`
    U32 = 4,
    /// `i32`
    I32 = 5,
    /// `f32`
    F32 = 6,
    /// `bool`, one byte (0 or 1)
    Bool = 7,
    /// UTF-8 string: `u64` length, then bytes
    String = 8,
    /// Array: `u32` element type, `u64` count, then the elements
    Array = 9,
    /// `u64`
    U64 = 10,
    /// `i64`
    I64 = 11,
    /// `f64`
    F64 = 12,
}

impl MetaType {
    /// Every type, in id order.
    pub const ALL: [MetaType; 13] = [
        MetaType::U8,
        MetaType::I8,
        MetaType::U16,
        MetaType::I16,
        MetaType::U32,
        MetaType::I32,
        MetaType::F32,
        MetaType::Bool,
        MetaType::String,
        MetaType::Array,
        MetaType::U64,
        MetaType::I64,
        MetaType::F64,
    ];

    /// The type with this id, if GGUF defines it.
    pub fn from_u32(id: u32) -> Option<MetaType> {
        Self::ALL.get(id as usize).copied()
    }

    /// The id stored in a file.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Short lower-case name (`"u32"`, `"string"`, `"array"`).
    pub fn name(self) -> &'static str {
        match self {
            MetaType::U8 => "u8",
            MetaType::I8 => "i8",
            MetaType::U16 => "u16",
            MetaType::I16 => "i16",
            MetaType::U32 => "u32",
            MetaType::I32 => "i32",
            MetaType::F32 => "f32",
            MetaType::Bool => "bool",
            MetaType::String => "string",
            MetaType::Array => "array",
            MetaType::U64 => "u64",
            MetaType::I64 => "i64",
            MetaType::F64 => "f64",
        }
    }

    /// The fewest bytes one value of this type can take in a file: its size for fixed-size
    /// types, the length field for strings, the type and count fields for arrays.
    pub fn min_encoded_len(self) -> u64 {
        match self {
            MetaType::U8 | MetaType::I8 | MetaType::Bool => 1,
            MetaType::U16 | MetaType::I16 => 2,
            MetaType::U32 | MetaType::I32 | MetaType::F32 => 4,
            MetaType::U64 | MetaType::I64 | MetaType::F64 | MetaType::String => 8,
            MetaType::Array => 12,
        }
    }
}

impl fmt::Display for MetaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An array value: its element type and its elements, stored compactly by type.
///
/// A `u8` array is held as bytes, an `f32` array as `f32`s, and so on for every fixed-size type
/// (one element costs its size in the file); an array of strings is held as one buffer of their
/// bytes plus one 8-byte end offset per string (exactly the size of its encoding in the file);
/// an array of arrays as 24 bytes per inner array (twice the 12 bytes of the smallest inner array
/// in the file) plus the inner arrays' own storage. So the metadata of a file costs at most about
/// twice its bytes in the file, whatever its shape (see `docs/reliability.md`, P3).
///
/// Elements are read with [`get`](Self::get) or [`iter`](Self::iter) (as [`MetaValue`]s, owned),
/// or without copying through the typed views ([`as_u8s`](Self::as_u8s),
/// [`strs`](Self::strs), [`arrays`](Self::arrays), ...).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaArray {
    data: ArrayData,
}

/// The storage of a [`MetaArray`], one variant per element type.
#[derive(Clone, Debug, PartialEq)]
enum ArrayData {
    U8(Box<[u8]>),
    I8(Box<[i8]>),
    U16(Box<[u16]>),
    I16(Box<[i16]>),
    U32(Box<[u32]>),
    I32(Box<[i32]>),
    F32(Box<[f32]>),
    Bool(Box<[bool]>),
    /// Packed strings: empty for an empty array; otherwise the count `n` (a `u64`), then `n`
    /// end offsets (`u64`, into the text), then the text: the strings' bytes one after another,
    /// each valid UTF-8.
    String(Box<[u8]>),
    Array(Box<[MetaArray]>),
    U64(Box<[u64]>),
    I64(Box<[i64]>),
    F64(Box<[f64]>),
    /// Built by [`MetaArray::new`] from values that do not all have the element type: kept as
    /// given, so that the writer can say which element is wrong. The reader never makes one.
    Mixed(Box<(MetaType, Vec<MetaValue>)>),
}

/// Packs strings as [`ArrayData::String`] holds them.
fn pack_strings<'s>(n: usize, text_len: usize, strs: impl Iterator<Item = &'s str>) -> Box<[u8]> {
    if n == 0 {
        return Box::new([]);
    }
    let mut out = Vec::with_capacity(8 + 8 * n + text_len);
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.resize(8 + 8 * n, 0);
    let mut end = 0u64;
    for (i, s) in strs.enumerate() {
        out.extend_from_slice(s.as_bytes());
        end += s.len() as u64;
        out[8 + 8 * i..16 + 8 * i].copy_from_slice(&end.to_le_bytes());
    }
    out.into_boxed_slice()
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Number of strings in a packed buffer.
fn packed_len(b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        read_u64(b, 0) as usize
    }
}

/// String `i` of a packed buffer.
fn packed_get(b: &[u8], i: usize) -> Option<&str> {
    let n = packed_len(b);
    if i >= n {
        return None;
    }
    let text = 8 + 8 * n;
    let start = if i == 0 {
        0
    } else {
        read_u64(b, 8 * i) as usize
    };
    let end = read_u64(b, 8 + 8 * i) as usize;
    // Every string was valid UTF-8 when packed, and the offsets are its bounds.
    Some(std::str::from_utf8(&b[text + start..text + end]).expect("packed strings are UTF-8"))
}

/// Typed slice views, one per fixed-size element type.
macro_rules! typed_views {
    ($($(#[$doc:meta])* $name:ident: $variant:ident => $t:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<&[$t]> {
                match &self.data {
                    ArrayData::$variant(v) => Some(v),
                    _ => None,
                }
            }
        )*
    };
}

/// `From<Vec<T>>` for every element type stored as a slice.
macro_rules! from_vecs {
    ($($variant:ident => $t:ty;)*) => {
        $(
            impl From<Vec<$t>> for MetaArray {
                /// A compact array of these elements.
                fn from(v: Vec<$t>) -> MetaArray {
                    MetaArray { data: ArrayData::$variant(v.into_boxed_slice()) }
                }
            }
        )*
    };
}

from_vecs! {
    U8 => u8; I8 => i8; U16 => u16; I16 => i16; U32 => u32; I32 => i32; F32 => f32;
    Bool => bool; U64 => u64; I64 => i64; F64 => f64; Array => MetaArray;
}

impl From<Vec<String>> for MetaArray {
    /// A compact array of strings.
    fn from(v: Vec<String>) -> MetaArray {
        MetaArray::from_strs(v.iter().map(String::as_str))
    }
}

impl MetaArray {
    /// An array of `elem_type` values, stored compactly. Values that do not all have
    /// `elem_type` are kept as given; the writer refuses such an array, naming the first wrong
    /// element.
    pub fn new(elem_type: MetaType, values: Vec<MetaValue>) -> MetaArray {
        if values.iter().any(|v| v.type_of() != elem_type) {
            return MetaArray {
                data: ArrayData::Mixed(Box::new((elem_type, values))),
            };
        }
        macro_rules! collect {
            ($variant:ident) => {
                MetaArray::from(
                    values
                        .into_iter()
                        .map(|v| match v {
                            MetaValue::$variant(x) => x,
                            _ => unreachable!("every value was checked to have the element type"),
                        })
                        .collect::<Vec<_>>(),
                )
            };
        }
        match elem_type {
            MetaType::U8 => collect!(U8),
            MetaType::I8 => collect!(I8),
            MetaType::U16 => collect!(U16),
            MetaType::I16 => collect!(I16),
            MetaType::U32 => collect!(U32),
            MetaType::I32 => collect!(I32),
            MetaType::F32 => collect!(F32),
            MetaType::Bool => collect!(Bool),
            MetaType::U64 => collect!(U64),
            MetaType::I64 => collect!(I64),
            MetaType::F64 => collect!(F64),
            MetaType::Array => collect!(Array),
            MetaType::String => {
                MetaArray::from_strs(values.iter().map(|v| v.as_str().unwrap_or_default()))
            }
        }
    }

    /// An array of strings, packed (one buffer, one end offset per string).
    pub fn from_strs<'s>(strs: impl Iterator<Item = &'s str> + Clone) -> MetaArray {
        let (n, text) = strs.clone().fold((0, 0), |(n, t), s| (n + 1, t + s.len()));
        MetaArray {
            data: ArrayData::String(pack_strings(n, text, strs)),
        }
    }

    /// An array of strings from their packed form, made by the reader.
    pub(crate) fn from_packed_strings(packed: Box<[u8]>) -> MetaArray {
        MetaArray {
            data: ArrayData::String(packed),
        }
    }

    /// The values of an array built by [`new`](Self::new) from values that do not all have
    /// its element type.
    pub(crate) fn mixed(&self) -> Option<&[MetaValue]> {
        match &self.data {
            ArrayData::Mixed(m) => Some(&m.1),
            _ => None,
        }
    }

    /// Type of every element.
    pub fn elem_type(&self) -> MetaType {
        match &self.data {
            ArrayData::U8(_) => MetaType::U8,
            ArrayData::I8(_) => MetaType::I8,
            ArrayData::U16(_) => MetaType::U16,
            ArrayData::I16(_) => MetaType::I16,
            ArrayData::U32(_) => MetaType::U32,
            ArrayData::I32(_) => MetaType::I32,
            ArrayData::F32(_) => MetaType::F32,
            ArrayData::Bool(_) => MetaType::Bool,
            ArrayData::String(_) => MetaType::String,
            ArrayData::Array(_) => MetaType::Array,
            ArrayData::U64(_) => MetaType::U64,
            ArrayData::I64(_) => MetaType::I64,
            ArrayData::F64(_) => MetaType::F64,
            ArrayData::Mixed(m) => m.0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ArrayData::U8(v) => v.len(),
            ArrayData::I8(v) => v.len(),
            ArrayData::U16(v) => v.len(),
            ArrayData::I16(v) => v.len(),
            ArrayData::U32(v) => v.len(),
            ArrayData::I32(v) => v.len(),
            ArrayData::F32(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
            ArrayData::String(b) => packed_len(b),
            ArrayData::Array(v) => v.len(),
            ArrayData::U64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::Mixed(m) => m.1.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`MetaValue`] (a copy: a string or an inner array is cloned; use
    /// [`strs`](Self::strs) and [`arrays`](Self::arrays) to borrow them).
    pub fn get(&self, i: usize) -> Option<MetaValue> {
        Some(match &self.data {
            ArrayData::U8(v) => MetaValue::U8(*v.get(i)?),
            ArrayData::I8(v) => MetaValue::I8(*v.get(i)?),
            ArrayData::U16(v) => MetaValue::U16(*v.get(i)?),
            ArrayData::I16(v) => MetaValue::I16(*v.get(i)?),
            ArrayData::U32(v) => MetaValue::U32(*v.get(i)?),
            ArrayData::I32(v) => MetaValue::I32(*v.get(i)?),
            ArrayData::F32(v) => MetaValue::F32(*v.get(i)?),
            ArrayData::Bool(v) => MetaValue::Bool(*v.get(i)?),
            ArrayData::String(b) => MetaValue::String(packed_get(b, i)?.to_owned()),
            ArrayData::Array(v) => MetaValue::Array(v.get(i)?.clone()),
            ArrayData::U64(v) => MetaValue::U64(*v.get(i)?),
            ArrayData::I64(v) => MetaValue::I64(*v.get(i)?),
            ArrayData::F64(v) => MetaValue::F64(*v.get(i)?),
            ArrayData::Mixed(m) => m.1.get(i)?.clone(),
        })
    }

    /// The elements in order, as [`MetaValue`]s (copies, as [`get`](Self::get) makes them).
    pub fn iter(&self) -> impl Iterator<Item = MetaValue> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// The strings of an array of strings, borrowed, in order.
    pub fn strs(&self) -> Option<impl Iterator<Item = &str> + '_> {
        match &self.data {
            ArrayData::String(b) => Some((0..packed_len(b)).filter_map(move |i| packed_get(b, i))),
            _ => None,
        }
    }

    /// The inner arrays of an array of arrays, borrowed.
    pub fn arrays(&self) -> Option<&[MetaArray]> {
        match &self.data {
            ArrayData::Array(v) => Some(v),
            _ => None,
        }
    }

    typed_views! {
        /// The elements of a `u8` array.
        as_u8s: U8 => u8;
        /// The elements of an `i8` array.
        as_i8s: I8 => i8;
        /// The elements of a `u16` array.
        as_u16s: U16 => u16;
        /// The elements of an `i16` array.
        as_i16s: I16 => i16;
        /// The elements of a `u32` array.
        as_u32s: U32 => u32;
        /// The elements of an `i32` array.
        as_i32s: I32 => i32;
        /// The elements of an `f32` array.
        as_f32s: F32 => f32;
        /// The elements of a `bool` array.
        as_bools: Bool => bool;
        /// The elements of a `u64` array.
        as_u64s: U64 => u64;
        /// The elements of an `i64` array.
        as_i64s: I64 => i64;
        /// The elements of an `f64` array.
        as_f64s: F64 => f64;
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// Array (possibly of arrays)
    Array(MetaArray),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

impl MetaValue {
    /// The value's type.
    pub fn type_of(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array(_) => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }

    /// The value as a `u64`, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `i64`, for any integer type whose value fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `f64`, for `f32` and `f64` values.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a boolean, for `bool` values.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The string, for string values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, for array values.
    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Strings longer than this many characters are cut in [`MetaValue`]'s `Display`.
const DISPLAY_STR_CHARS: usize = 60;
/// Arrays longer than this are cut in [`MetaValue`]'s `Display`.
const DISPLAY_ARRAY_ITEMS: usize = 6;

/// Short form for listings: strings quoted and cut after 60 characters, arrays as
/// `[u32; 1000] [1, 2, 3, 4, 5, 6, ...]`.
impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::String(s) => {
                let mut chars = s.chars();
                let head: String = chars.by_ref().take(DISPLAY_STR_CHARS).collect();
                if chars.next().is_some() {
                    write!(f, "{:?}...", head)
                } else {
                    write!(f, "{:?}", head)
                }
            }
            MetaValue::Array(a) => {
                write!(f, "[{}; {}] [", a.elem_type(), a.len())?;
                for i in 0..a.len().min(DISPLAY_ARRAY_ITEMS) {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match a.arrays() {
                        // Nested arrays are only summarised, so output stays short.
                        Some(inner) => write!(f, "[{}; {}]", inner[i].elem_type(), inner[i].len())?,
                        None => match a.get(i) {
                            Some(v) => write!(f, "{v}")?,
                            None => f.write_str("?")?,
                        },
                    }
                }
                if a.len() > DISPLAY_ARRAY_ITEMS {
                    f.write_str(", ...")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_ids_round_trip() {
        for (i, t) in MetaType::ALL.iter().enumerate() {
            assert_eq!(t.id() as usize, i);
            assert_eq!(MetaType::from_u32(i as u32), Some(*t));
        }
        assert_eq!(MetaType::from_u32(13), None);
        assert_eq!(MetaType::from_u32(u32::MAX), None);
    }

    #[test]
    fn accessors() {
        assert_eq!(MetaValue::U32(7).as_u64(), Some(7));
        assert_eq!(MetaValue::I32(-1).as_u64(), None);
        assert_eq!(MetaValue::I8(-3).as_i64(), Some(-3));
        assert_eq!(MetaValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetaValue::F32(1.5).as_f64(), Some(1.5));
        assert_eq!(MetaValue::String("x".into()).as_str(), Some("x"));
        assert_eq!(MetaValue::U8(1).as_str(), None);
        assert_eq!(MetaValue::Bool(true).as_bool(), Some(true));
        assert_eq!(MetaValue::F64(0.0).type_of(), MetaType::F64);
    }

    #[test]
    fn arrays_are_compact_and_read_back() {
        // 24 bytes per inner array: twice the 12 bytes of the smallest array in a file.
        assert_eq!(std::mem::size_of::<MetaArray>(), 24);
        let strs = MetaArray::from(vec!["a".to_string(), String::new(), "日本".to_string()]);
        assert_eq!(strs.elem_type(), MetaType::String);
        assert_eq!(strs.len(), 3);
        assert_eq!(strs.strs().unwrap().collect::<Vec<_>>(), ["a", "", "日本"]);
        assert_eq!(strs.get(2), Some(MetaValue::String("日本".into())));
        assert_eq!(strs.get(3), None);
        // `new` from matching values is the same compact array.
        let via_new = MetaArray::new(MetaType::String, strs.iter().collect::<Vec<MetaValue>>());
        assert_eq!(via_new, strs);
        let bytes = MetaArray::from(vec![1u8, 2, 3]);
        assert_eq!(bytes.as_u8s(), Some(&[1u8, 2, 3][..]));
        assert_eq!(bytes.as_f32s(), None);
        assert_eq!(
            MetaArray::new(
                MetaType::U8,
                vec![MetaValue::U8(1), MetaValue::U8(2), MetaValue::U8(3)]
            ),
            bytes
        );
        let empty = MetaArray::from(Vec::<String>::new());
        assert!(empty.is_empty() && empty.strs().unwrap().next().is_none());
        // Mixed values are kept as given, for the writer to refuse.
        let mixed = MetaArray::new(MetaType::U8, vec![MetaValue::U8(1), MetaValue::I8(1)]);
        assert_eq!(mixed.elem_type(), MetaType::U8);
        assert_eq!(mixed.get(1), Some(MetaValue::I8(1)));
    }

    #[test]
    fn display_is_short() {
        let a = MetaValue::Array(MetaArray::new(
            MetaType::U32,
            (0..1000).map(MetaValue::U32).collect(),
        ));
        assert_eq!(a.to_string(), "[u32; 1000] [0, 1, 2, 3, 4, 5, ...]");
        let nested = MetaValue::Array(MetaArray::new(
            MetaType::Array,
            vec![MetaValue::Array(MetaArray::new(
                MetaType::String,
                vec![MetaValue::String("a".into())],
            ))],
        ));
        assert_eq!(nested.to_string(), "[array; 1] [[string; 1]]");
        let long = MetaValue::String("x".repeat(100));
        assert_eq!(long.to_string(), format!("{:?}...", "x".repeat(60)));
        assert_eq!(MetaValue::String("a\"b".into()).to_string(), "\"a\\\"b\"");
    }
}
