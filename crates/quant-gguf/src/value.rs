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

/// An array value: its element type and its elements. Elements may themselves be arrays, each
/// with its own element type.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaArray {
    /// Type of every element.
    pub elem_type: MetaType,
    /// The elements, in file order.
    pub values: Vec<MetaValue>,
}

impl MetaArray {
    /// An array of `elem_type` values. The writer checks that every value has that type.
    pub fn new(elem_type: MetaType, values: Vec<MetaValue>) -> MetaArray {
        MetaArray { elem_type, values }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
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
                write!(f, "[{}; {}] [", a.elem_type, a.values.len())?;
                for (i, v) in a.values.iter().take(DISPLAY_ARRAY_ITEMS).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match v {
                        // Nested arrays are only summarised, so output stays short.
                        MetaValue::Array(inner) => {
                            write!(f, "[{}; {}]", inner.elem_type, inner.values.len())?
                        }
                        other => write!(f, "{other}")?,
                    }
                }
                if a.values.len() > DISPLAY_ARRAY_ITEMS {
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
