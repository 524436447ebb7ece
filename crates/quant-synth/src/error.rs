//! [`SynthError`], the error type of `quant-synth`.

use std::path::PathBuf;

use quant_core::GgmlType;

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
        /// The writer's error.
        #[source]
        source: quant_gguf::GgufError,
    },

    /// A tensor of a type whose scale fields this crate does not know (see
    /// [`SCALE_FIELDS`](crate::SCALE_FIELDS)): random bytes could hold NaN or infinite scales.
    #[error("tensor `{tensor}`: cannot synthesize {ty} data (scale layout unknown)")]
    UnsupportedType {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
}
