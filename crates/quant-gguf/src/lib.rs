//! # quant-gguf
//!
//! GGUF v2/v3 reader and v3 writer. The crate knows bytes, not formats: the only thing it asks of
//! a tensor type is its block geometry ([`quant_core::GgmlType::geometry`]), to size tensors.
//!
//! * [`GgufFile`] opens a file (memory-mapped, zero-copy, or unmapped, reading only the header),
//!   checks the whole header and every tensor's placement, and hands out metadata,
//!   [`TensorInfo`]s (built on demand from a compact table that costs about the tensor infos'
//!   bytes in the file: [`GgufFile::tensors`], [`GgufFile::tensor`], [`GgufFile::tensor_at`],
//!   [`GgufFile::tensor_names`]) and tensor bytes ([`GgufFile::tensor_data`], borrowed from the
//!   mapping or read on demand; [`GgufFile::read_tensor_at`] into the caller's buffer).
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
//! `OpenOptions { mmap: false }`. That reads only the header, with ordinary reads of a growing
//! prefix (1 MiB, grown until the header fits, to at most about 1.5 × the header; the last try
//! is the whole file, so a bad file gives the same error either way), keeps of it only the
//! tensor infos, and keeps the file open: tensor bytes are read on demand with positioned
//! reads ([`GgufFile::tensor_data`] returns them owned, [`GgufFile::read_tensor_at`] fills a
//! buffer of the caller's). Host memory stays bounded by the header and the tensor being read,
//! whatever the file's size. A file that shrinks after
//! opening then gives [`GgufError::TensorRead`], naming the tensor, instead of `SIGBUS`; a file
//! rewritten in place at the same size is read as it now is. A mapped file's tensor infos are
//! read from the mapping when asked for, so a header rewritten in place while mapped changes
//! them too; each is decoded with bounds checks (no panic), and tensor bytes are still checked
//! against the file's length.
//! [`GgufWriter::write_file`] writes to a temporary file and renames it, so readers of files it
//! writes never see them change.
#![warn(missing_docs)]

mod cursor;
mod error;
mod file;
mod parse;
mod size;
mod table;
mod text;
mod value;
mod writer;

pub use cursor::MAX_ARRAY_DEPTH;
pub use error::GgufError;
pub use file::{GgufFile, OpenOptions, TensorInfo};
pub use parse::{DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT};
pub use size::MAX_DIMS;
pub use table::{TensorNames, Tensors};
pub use text::{is_unsafe_char, key_problem, tensor_name_problem, Escaped, MAX_TENSOR_NAME_BYTES};
pub use value::{MetaArray, MetaType, MetaValue};
pub use writer::{GgufStreamWriter, GgufWriter};
