//! [`SynthError`], the error type of `quant-synth`.

use std::path::PathBuf;

use quant_core::GgmlType;

use crate::Arch;

/// Errors from writing a synthetic model.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Creating, writing or renaming the output failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`"create"`, `"write"`, `"rename"`).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The GGUF writer refused the plan or failed while writing.
    #[error("{}: {source}", path.display())]
    Gguf {
        /// The file being written.
        path: PathBuf,
        /// The writer's error (boxed: `GgufError` is large, and most results are `Ok`).
        #[source]
        source: Box<quant_gguf::GgufError>,
    },

    /// The architecture has no such size preset or mix ([`Arch::sizes`], [`Arch::mixes`]).
    #[error("{arch} has no {what} '{name}': expected one of {expected}")]
    NotOffered {
        /// The architecture.
        arch: Arch,
        /// `"size"` or `"mix"`.
        what: &'static str,
        /// The size or mix asked for.
        name: String,
        /// Those the architecture has, comma-separated.
        expected: String,
    },

    /// A tensor of a type [`supported_type`](crate::supported_type) rejects: a quantized type
    /// with no format linked into the registry (only the format knows where its scales are, and
    /// random bytes could hold NaN or infinite ones), or a plain type other than F32 and F16.
    #[error(
        "tensor `{tensor}`: cannot synthesize {ty} data (only F32, F16 and quantized types \
         whose format is linked into the registry)"
    )]
    UnsupportedType {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
}
