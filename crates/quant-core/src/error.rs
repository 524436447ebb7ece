//! [`CoreError`], the error type of `quant-core`.

use crate::GgmlType;

/// Errors raised by the format registry and the checked dequantization entry points.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No linked format crate handles this type.
    #[error("no quantization format for tensor type {ty} is linked into this build")]
    Unsupported {
        /// The type that was looked up.
        ty: GgmlType,
    },
    /// Two format crates registered the same type id.
    #[error("type {ty} is registered twice: by {first} and by {second}")]
    DuplicateRegistration {
        /// The id registered twice.
        ty: GgmlType,
        /// Name the first registration gave.
        first: &'static str,
        /// Name the second registration gave.
        second: &'static str,
    },
    /// The byte and element counts handed to a dequantizer do not describe whole blocks.
    #[error(
        "{format}: {bytes} bytes and {elems} elements do not match whole blocks \
         ({block_bytes} bytes per {block_elems} elements)"
    )]
    LengthMismatch {
        /// Format name.
        format: &'static str,
        /// Bytes given.
        bytes: usize,
        /// Elements asked for.
        elems: usize,
        /// Bytes per block of the format.
        block_bytes: usize,
        /// Elements per block of the format.
        block_elems: usize,
    },
}
