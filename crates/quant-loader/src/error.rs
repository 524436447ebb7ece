//! [`LoadError`], the loader's error type.

use std::path::PathBuf;

use quant_core::{CoreError, GgmlType};
use quant_gguf::GgufError;
use quant_gpu::GpuError;

use crate::plan::PlanError;

/// Errors from loading tensors. Each names the file, and the tensor where there is one.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or parsed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// No tensor of that name.
    #[error("{file}: no tensor named '{tensor}'", file = file.display())]
    NoTensor {
        /// The file.
        file: PathBuf,
        /// The name asked for.
        tensor: String,
    },
    /// The file's size changed on disk after it was opened (another process truncated or
    /// appended to it). Reading a mapped file that shrank would crash the process with SIGBUS,
    /// so the loader checks before touching a tensor's bytes.
    #[error(
        "{file}: the file changed size on disk since it was opened ({was} bytes, now {now}); \
         reopen it",
        file = file.display()
    )]
    FileChanged {
        /// The file.
        file: PathBuf,
        /// Size when opened.
        was: u64,
        /// Size now.
        now: u64,
    },
    /// The file was rewritten on disk after it was opened, at the same size: its modification
    /// or status-change time, or the inode or device its path names, differ from when it was
    /// opened. Bytes read since may mix two versions of the file.
    #[error(
        "{file}: the file was modified on disk since it was opened ({what}); bytes read from \
         it may mix two versions: reopen it",
        file = file.display()
    )]
    FileModified {
        /// The file.
        file: PathBuf,
        /// What differs (`modification time`, `inode`, ...).
        what: String,
    },
    /// The caller's cancellation flag was set during a load
    /// ([`GgufLoader::load_with_cancel`](crate::GgufLoader::load_with_cancel)); what the load
    /// had taken is freed.
    #[error("{file}: the load was interrupted", file = file.display())]
    Interrupted {
        /// The file.
        file: PathBuf,
    },
    /// No linked format handles the tensor's type.
    #[error("{file}: tensor '{tensor}' has type {ty}, which no linked format handles", file = file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// Float values were asked of an integer tensor (I8, I16, I32, I64): such tensors hold
    /// indices or ids, not weights, and are kept as they are (see
    /// [`quant_core::GgmlType::is_integer`]).
    #[error(
        "{file}: tensor '{tensor}' has type {ty}: integer tensors hold indices/ids, not weights; \
         they are kept as they are, never converted to floats",
        file = file.display()
    )]
    IntegerTensor {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// The tensor, or the asked region of it, cannot be loaded as asked (a region outside it,
    /// native blocks cut mid-block, blocks on a device with no kernel, a type of unknown size).
    #[error("{file}: tensor '{tensor}' {source}", file = file.display())]
    Plan {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Why.
        source: PlanError,
    },
    /// Blocks a caller handed over (no file) cannot be expanded as asked.
    #[error("blocks of {ty}: {reason}")]
    Blocks {
        /// Their type.
        ty: GgmlType,
        /// What was expected and what came.
        reason: String,
    },
    /// The tensor's size does not fit this machine's address space.
    #[error("{file}: tensor '{tensor}' is too large for this machine ({elements} elements)", file = file.display())]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its element count.
        elements: u64,
    },
    /// CPU dequantization rejected the tensor's bytes.
    #[error("{file}: tensor '{tensor}': {source}", file = file.display())]
    Core {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What went wrong.
        source: CoreError,
    },
    /// The device failed.
    #[error("{file}: tensor '{tensor}' on {device}: {source}", file = file.display())]
    Gpu {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// The device, as text.
        device: String,
        /// What went wrong (boxed: it is large, and errors travel by value).
        source: Box<GpuError>,
    },
    /// The load's options cannot work for this file (a ring slot smaller than a block, a
    /// strategy that cannot produce the asked output).
    #[error("{file}: {reason}", file = file.display())]
    Options {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading a tensor's bytes from the file failed.
    #[error("{file}: tensor '{tensor}': {reason}", file = file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// What went wrong.
        reason: String,
    },
    /// A placement over several devices does not fit.
    #[error(
        "{file}: device {device} ({label}) is too small for its share: {need} bytes needed \
         (with {reserve} reserved for the ring and runtime), {free} free",
        file = file.display()
    )]
    DeviceTooSmall {
        /// The file.
        file: PathBuf,
        /// Index of the device in the list given.
        device: usize,
        /// The device, as text (`"cuda:1"`), or `"#1"` when no label was given.
        label: String,
        /// Bytes its share needs, reserve included.
        need: u64,
        /// Bytes reserved per device.
        reserve: u64,
        /// Bytes free on it.
        free: u64,
    },
}
