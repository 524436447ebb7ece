//! [`GgufError`], the error type of `quant-gguf`.
//!
//! Every reading error names the file (`path`; for [`GgufFile::from_bytes`](crate::GgufFile::from_bytes)
//! the name it was given) and the field or tensor at fault, so that a message alone says where
//! to look. Writer errors name the key or tensor they concern.

use std::path::PathBuf;

use quant_core::GgmlType;

use crate::{Escaped, MetaType};

/// Errors from reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening, reading, mapping or writing the file failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`"open"`, `"mmap"`, `"read"`, `"write"`, `"rename"`).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`. The message shows them in hex and as text
    /// (`0x46 0x55 0x47 0x47 ("FUGG")`), and names `FUGG`, GGUF's magic byte-swapped, as a
    /// big-endian file.
    #[error(
        "{}: field `magic`: {}",
        path.display(),
        magic_problem(found)
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The bytes found (fewer than four if the file is that short).
        found: Vec<u8>,
    },

    /// The version field reads as a small number with its bytes swapped: a big-endian GGUF.
    #[error(
        "{}: field `version`: this is a big-endian GGUF file (version {swapped} byte-swapped); \
         only little-endian files are supported",
        path.display()
    )]
    BigEndian {
        /// The file.
        path: PathBuf,
        /// The version number once its bytes are swapped back.
        swapped: u32,
    },

    /// A version other than 2 or 3 (version 1 included: it used 32-bit counts and lengths).
    #[error("{}: field `version`: GGUF v{version} is not supported (only v2 and v3 are)", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },

    /// A fixed-size field does not fit in the bytes that remain.
    #[error(
        "{}: field `{field}`: file cut short: {needed} bytes needed at offset {offset}, {available} left",
        path.display(),
        field = Escaped(field)
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The field being read.
        field: String,
        /// Absolute offset of the field.
        offset: u64,
        /// Bytes the field takes.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },

    /// A count (of tensors, metadata pairs or array items) claims more items than the remaining
    /// bytes could hold even at the smallest size an item can take.
    #[error(
        "{}: field `{field}`: count {count} cannot fit: {count} items of at least {min_item_bytes} \
         bytes each need more than the {remaining} bytes left",
        path.display(),
        field = Escaped(field)
    )]
    CountTooLarge {
        /// The file.
        path: PathBuf,
        /// The count's field.
        field: String,
        /// The count claimed.
        count: u64,
        /// The smallest size of one item.
        min_item_bytes: u64,
        /// Bytes left after the count.
        remaining: u64,
    },

    /// A string length exceeds the bytes that remain.
    #[error(
        "{}: field `{field}`: string length {len} exceeds the {remaining} bytes left in the file",
        path.display(),
        field = Escaped(field)
    )]
    StringTooLong {
        /// The file.
        path: PathBuf,
        /// The string's field.
        field: String,
        /// The length claimed.
        len: u64,
        /// Bytes left after the length.
        remaining: u64,
    },

    /// A string is not valid UTF-8.
    #[error("{}: field `{field}`: string at offset {offset} is not valid UTF-8", path.display(), field = Escaped(field))]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// The string's field.
        field: String,
        /// Absolute offset of the string's bytes.
        offset: u64,
    },

    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`](crate::MAX_ARRAY_DEPTH).
    #[error("{}: field `{field}`: arrays nested deeper than {limit} levels", path.display(), field = Escaped(field))]
    NestingTooDeep {
        /// The file.
        path: PathBuf,
        /// The metadata key whose value nests too deeply.
        field: String,
        /// The limit.
        limit: usize,
    },

    /// A metadata value type id outside 0..=12.
    #[error("{}: field `{field}`: unknown metadata value type {type_id}", path.display(), field = Escaped(field))]
    UnknownValueType {
        /// The file.
        path: PathBuf,
        /// The field whose type it is.
        field: String,
        /// The id found.
        type_id: u32,
    },

    /// A boolean byte other than 0 or 1.
    #[error("{}: field `{field}`: boolean byte {byte} is neither 0 nor 1", path.display(), field = Escaped(field))]
    InvalidBool {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// The byte found.
        byte: u8,
    },

    /// A metadata key that is empty or holds a control character (see
    /// [`key_problem`](crate::key_problem)).
    #[error("{}: metadata key #{index} `{}`: {reason}", path.display(), Escaped(key))]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Its position among the metadata pairs, from 0.
        index: u64,
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor name longer than ggml allows or holding a control character (see
    /// [`tensor_name_problem`](crate::tensor_name_problem)).
    #[error("{}: tensor #{index} `{}`: {reason}", path.display(), Escaped(name))]
    BadTensorName {
        /// The file.
        path: PathBuf,
        /// Its position among the tensor infos, from 0.
        index: u64,
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The same metadata key appears twice.
    #[error("{}: metadata key `{key}` appears more than once", path.display(), key = Escaped(key))]
    DuplicateKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },

    /// The same tensor name appears twice.
    #[error("{}: tensor #{tensor_index} `{tensor}` appears more than once", path.display(), tensor = Escaped(tensor))]
    DuplicateTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
    },

    /// The tensor infos before tensor `tensor_index` already take 4 GiB of the header, more
    /// than the reader's table indexes (it keeps 32-bit positions; 4 GiB of tensor infos is
    /// over 100 million tensors).
    #[error(
        "{}: tensor #{tensor_index}: the tensor infos before it take {len} bytes, more than \
         the {} bytes the reader indexes",
        path.display(),
        u32::MAX
    )]
    TensorInfosTooLarge {
        /// The file.
        path: PathBuf,
        /// Position of the first tensor info that starts past the limit, from 0.
        tensor_index: u64,
        /// Bytes the tensor infos before it take.
        len: u64,
    },

    /// `general.alignment` is present but not a `u32`.
    #[error("{}: field `general.alignment`: must be a u32, found {found}", path.display())]
    AlignmentNotU32 {
        /// The file.
        path: PathBuf,
        /// The type found.
        found: MetaType,
    },

    /// `general.alignment` is not a power of two from 1 to
    /// [`MAX_ALIGNMENT`](crate::MAX_ALIGNMENT).
    #[error(
        "{}: field `general.alignment`: {value} is not a power of two from 1 to {}",
        path.display(),
        crate::MAX_ALIGNMENT
    )]
    BadAlignment {
        /// The file.
        path: PathBuf,
        /// The value found.
        value: u32,
    },

    /// A tensor has 0 or more than 4 dimensions.
    #[error("{}: tensor #{tensor_index} `{tensor}`: {n_dims} dimensions (must be 1 to 4)", path.display(), tensor = Escaped(tensor))]
    BadDimCount {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// The count found.
        n_dims: u32,
    },

    /// A tensor dimension is zero (quantforge rejects empty tensors).
    #[error("{}: tensor #{tensor_index} `{tensor}`: dimension {index} is zero (dims {dims:?})", path.display(), tensor = Escaped(tensor))]
    ZeroDimension {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// Which dimension.
        index: usize,
        /// All dimensions.
        dims: Vec<u64>,
    },

    /// The product of the dimensions does not fit in an `i64` (ggml's element count type).
    #[error("{}: tensor #{tensor_index} `{tensor}`: element count of dims {dims:?} overflows", path.display(), tensor = Escaped(tensor))]
    ElementCountOverflow {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// The dimensions.
        dims: Vec<u64>,
    },

    /// The tensor's size in bytes (or its end offset) overflows a `u64`.
    #[error(
        "{}: tensor #{tensor_index} `{tensor}`: byte count of {n_elements} {ty} elements overflows",
        path.display(),
        tensor = Escaped(tensor)
    )]
    ByteCountOverflow {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// Its element count.
        n_elements: u64,
        /// Its type.
        ty: GgmlType,
    },

    /// A type id ggml never defined.
    #[error("{}: tensor #{tensor_index} `{tensor}`: unknown tensor type id {type_id}", path.display(), tensor = Escaped(tensor))]
    UnknownTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// The id found.
        type_id: u32,
    },

    /// A type id ggml defined once and removed.
    #[error("{}: tensor #{tensor_index} `{tensor}`: tensor type {ty} has been removed from ggml", path.display(), tensor = Escaped(tensor))]
    RemovedTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// The type.
        ty: GgmlType,
    },

    /// A type ggml defines but whose block geometry quantforge does not know.
    #[error(
        "{}: tensor #{tensor_index} `{tensor}`: block geometry of tensor type {ty} is unknown to quantforge",
        path.display(),
        tensor = Escaped(tensor)
    )]
    UnknownGeometry {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// The type.
        ty: GgmlType,
    },

    /// The row length (`dims[0]`) is not a whole number of blocks.
    #[error(
        "{}: tensor #{tensor_index} `{tensor}`: row length {row_len} is not a multiple of the {ty} block size {block_elems}",
        path.display(),
        tensor = Escaped(tensor)
    )]
    RowNotBlockMultiple {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// `dims[0]`.
        row_len: u64,
        /// The type.
        ty: GgmlType,
        /// Elements per block of the type.
        block_elems: usize,
    },

    /// A tensor offset that is not a multiple of the alignment.
    #[error(
        "{}: tensor #{tensor_index} `{tensor}`: offset {offset} is not a multiple of the alignment {alignment}",
        path.display(),
        tensor = Escaped(tensor)
    )]
    MisalignedOffset {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its position among the tensor infos, from 0.
        tensor_index: u64,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// A tensor's data starts at or beyond the end of the file.
    #[error(
        "{}: tensor `{tensor}`: data at offset {start} lies beyond the end of the file ({file_len} bytes)",
        path.display(),
        tensor = Escaped(tensor)
    )]
    TensorBeyondFile {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Absolute start of its data.
        start: u64,
        /// File length.
        file_len: u64,
    },

    /// A tensor's data starts inside the file but runs past its end.
    #[error(
        "{}: tensor `{tensor}`: data cut short: {n_bytes} bytes at offset {start} need {end} bytes, \
         the file has {file_len}",
        path.display(),
        tensor = Escaped(tensor)
    )]
    TensorDataTruncated {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Absolute start of its data.
        start: u64,
        /// Its size in bytes.
        n_bytes: u64,
        /// Absolute end of its data.
        end: u64,
        /// File length.
        file_len: u64,
    },

    /// Two tensors' data ranges overlap (ggml lays the data section out tensor after tensor, so
    /// an overlap is a file meant to be read two ways).
    #[error(
        "{}: tensors `{first}` and `{second}`: data overlap (`{first}` at bytes \
         {first_start}..{first_end} of the data section, `{second}` at {second_start}..{second_end})",
        path.display(),
        first = Escaped(first), second = Escaped(second)
    )]
    OverlappingTensors {
        /// The file.
        path: PathBuf,
        /// The tensor whose data starts first (of the two, the first listed if both start at
        /// the same offset).
        first: String,
        /// Start of its data, relative to the data section.
        first_start: u64,
        /// End of its data (exclusive), relative to the data section.
        first_end: u64,
        /// The tensor whose data starts inside the first's.
        second: String,
        /// Start of its data, relative to the data section.
        second_start: u64,
        /// End of its data (exclusive), relative to the data section.
        second_end: u64,
    },

    /// Reading a tensor's bytes failed: an I/O error from an unmapped file (including a file
    /// that is now shorter than when it was opened), or a range asked of
    /// [`GgufFile::read_tensor_at`](crate::GgufFile::read_tensor_at) that lies outside the
    /// tensor, or a tensor too large to hold in memory on this machine.
    #[error(
        "{}: tensor `{tensor}`: reading {len} bytes at offset {offset}: {source}",
        path.display(),
        tensor = Escaped(tensor)
    )]
    TensorRead {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Absolute offset in the file of the first byte asked for.
        offset: u64,
        /// Number of bytes asked for.
        len: u64,
        /// Why it failed (`UnexpectedEof` when the file ended early).
        #[source]
        source: std::io::Error,
    },

    /// Writer: a metadata key added twice.
    #[error("writer: metadata key `{key}` added twice", key = Escaped(key))]
    WriterDuplicateKey {
        /// The key.
        key: String,
    },

    /// Writer: a tensor name added twice.
    #[error("writer: tensor `{tensor}` added twice", tensor = Escaped(tensor))]
    WriterDuplicateTensor {
        /// The tensor.
        tensor: String,
    },

    /// Writer: a metadata value that cannot be written as given.
    #[error("writer: metadata key `{}`: {reason}", Escaped(key))]
    WriterBadValue {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// Writer: a tensor whose shape, type or data is not valid.
    #[error("writer: tensor `{}`: {reason}", Escaped(tensor))]
    WriterBadTensor {
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },

    /// Stream writer: tensor data supplied out of turn (after the last tensor, or `finish`
    /// before the last one).
    #[error("stream writer: {reason}")]
    WriterStream {
        /// What is wrong.
        reason: String,
    },

    /// Writer: the alignment is not a power of two from 1 to
    /// [`MAX_ALIGNMENT`](crate::MAX_ALIGNMENT).
    #[error(
        "writer: field `general.alignment`: {value} is not a power of two from 1 to {}",
        crate::MAX_ALIGNMENT
    )]
    WriterBadAlignment {
        /// The alignment asked for.
        value: u32,
    },
}

/// `0x46 0x55 0x47 0x47 ("FUGG")`: bytes in hex, then as text (printable ASCII as it is, any
/// other byte as `\xNN`).
fn show_bytes(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
    let text: String = bytes
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' => format!("\\{}", b as char),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    format!("{} (\"{text}\")", hex.join(" "))
}

/// What [`GgufError::BadMagic`] says about the bytes found.
fn magic_problem(found: &[u8]) -> String {
    let mut swapped = crate::MAGIC;
    swapped.reverse();
    if found == swapped {
        format!(
            "first bytes {} are GGUF's magic byte-swapped: this is a big-endian GGUF file; \
             only little-endian files are supported",
            show_bytes(found)
        )
    } else if found.is_empty() {
        "not a GGUF file (it is empty, expected \"GGUF\")".into()
    } else {
        format!(
            "not a GGUF file (first bytes {}, expected \"GGUF\")",
            show_bytes(found)
        )
    }
}

impl GgufError {
    /// The file the error concerns, if it concerns one (writer value errors do not).
    pub fn path(&self) -> Option<&std::path::Path> {
        use GgufError::*;
        match self {
            Io { path, .. }
            | BadMagic { path, .. }
            | BigEndian { path, .. }
            | UnsupportedVersion { path, .. }
            | Truncated { path, .. }
            | CountTooLarge { path, .. }
            | StringTooLong { path, .. }
            | InvalidUtf8 { path, .. }
            | NestingTooDeep { path, .. }
            | UnknownValueType { path, .. }
            | InvalidBool { path, .. }
            | BadKey { path, .. }
            | BadTensorName { path, .. }
            | DuplicateKey { path, .. }
            | DuplicateTensor { path, .. }
            | TensorInfosTooLarge { path, .. }
            | AlignmentNotU32 { path, .. }
            | BadAlignment { path, .. }
            | BadDimCount { path, .. }
            | ZeroDimension { path, .. }
            | ElementCountOverflow { path, .. }
            | ByteCountOverflow { path, .. }
            | UnknownTensorType { path, .. }
            | RemovedTensorType { path, .. }
            | UnknownGeometry { path, .. }
            | RowNotBlockMultiple { path, .. }
            | MisalignedOffset { path, .. }
            | TensorBeyondFile { path, .. }
            | TensorDataTruncated { path, .. }
            | OverlappingTensors { path, .. }
            | TensorRead { path, .. } => Some(path),
            WriterDuplicateKey { .. }
            | WriterDuplicateTensor { .. }
            | WriterBadValue { .. }
            | WriterBadTensor { .. }
            | WriterStream { .. }
            | WriterBadAlignment { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert_traits<T: Send + Sync + 'static + std::error::Error>() {}
        assert_traits::<GgufError>();
    }

    /// Names, keys and fields are shown escaped in every message: a
    /// name from a file cannot clear the screen or set the terminal's title.
    #[test]
    fn messages_escape_what_comes_from_a_file() {
        let name = "w\x1b[2J\x1b]0;t\x07\u{9b}";
        let p = || PathBuf::from("m.gguf");
        let errors = [
            GgufError::DuplicateTensor {
                path: p(),
                tensor: name.into(),
                tensor_index: 0,
            },
            GgufError::DuplicateKey {
                path: p(),
                key: name.into(),
            },
            GgufError::Truncated {
                path: p(),
                field: name.into(),
                offset: 0,
                needed: 1,
                available: 0,
            },
            GgufError::TensorRead {
                path: p(),
                tensor: name.into(),
                offset: 0,
                len: 1,
                source: std::io::Error::other("x"),
            },
            GgufError::WriterDuplicateKey { key: name.into() },
            GgufError::OverlappingTensors {
                path: p(),
                first: name.into(),
                first_start: 0,
                first_end: 4,
                second: "v\r".into(),
                second_start: 0,
                second_end: 4,
            },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(!msg.chars().any(crate::is_unsafe_char), "{msg:?}");
            assert!(msg.contains("w\\x1b[2J\\x1b]0;t\\x07\\u{9b}"), "{msg}");
        }
    }

    #[test]
    fn path_is_reported() {
        let e = GgufError::BadAlignment {
            path: PathBuf::from("m.gguf"),
            value: 3,
        };
        assert_eq!(e.path(), Some(std::path::Path::new("m.gguf")));
        assert_eq!(
            e.to_string(),
            "m.gguf: field `general.alignment`: 3 is not a power of two from 1 to 65536"
        );
        assert_eq!(GgufError::WriterBadAlignment { value: 0 }.path(), None);
    }
}
