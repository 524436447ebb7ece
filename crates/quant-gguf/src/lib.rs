//! # quant-gguf
//!
//! GGUF v2/v3 reader and v3 writer. The crate knows bytes, not formats: the only thing it asks of
//! a tensor type is its block geometry ([`quant_core::GgmlType::geometry`]), to size tensors.
//!
//! * [`GgufFile`] opens a file (memory-mapped, zero-copy, or read into memory), checks the whole
//!   header and every tensor's placement, and hands out metadata, [`TensorInfo`]s and tensor
//!   bytes ([`GgufFile::tensor_data`]).
//! * [`GgufWriter`] writes GGUF v3 files (used by tests, fixtures and tools);
//!   [`GgufStreamWriter`] writes the same bytes with tensor data streamed tensor by tensor, for
//!   files larger than memory (`quant-synth`).
//! * [`GgufError`] says what is wrong with a file, naming the file and the field or tensor.
//!
//! ## Hardening
//!
//! The reader treats every file as hostile. It never panics on bad input and never allocates
//! from a size the file claims before checking that size against the bytes actually left: a
//! string length must not exceed the bytes left, and `N` items (metadata pairs, tensor infos,
//! array elements) need at least `N` times the smallest encoding of one item. Arrays nest at
//! most [`MAX_ARRAY_DEPTH`] levels. Counts and sizes are computed with checked arithmetic.
//! `docs/gguf.md` lists every rule and its error.
//!
//! ## Memory mapping and `SIGBUS`
//!
//! [`GgufFile::open`] maps the file. If another process truncates or rewrites the file while it
//! is mapped, touching a page that no longer exists raises `SIGBUS` and kills the process: the
//! header was checked against the file *as it was when opened*. For files that may change
//! underneath (a download still in progress, a file being re-quantized in place), open with
//! `OpenOptions { mmap: false }`, which reads the whole file into memory with ordinary reads.
//! [`GgufWriter::write_file`] writes to a temporary file and renames it, so readers of files it
//! writes never see them change.
#![warn(missing_docs)]

mod error;
mod file;
mod parse;
mod value;
mod writer;

pub use error::GgufError;
pub use file::{GgufFile, OpenOptions, TensorInfo};
pub use parse::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{MetaArray, MetaType, MetaValue};
pub use writer::{GgufStreamWriter, GgufWriter};
