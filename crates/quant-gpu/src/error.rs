//! [`GpuError`], the error type shared by every backend.

use std::path::PathBuf;

use crate::DeviceKind;

/// Errors from a GPU backend. Each carries what a user needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The vendor's runtime library could not be loaded, or reports no device at that ordinal.
    #[error("no {kind} device {ordinal}: {reason}")]
    NoDevice {
        /// API asked for.
        kind: DeviceKind,
        /// Ordinal asked for.
        ordinal: usize,
        /// What the runtime said.
        reason: String,
    },
    /// The backend was not compiled into this build.
    #[error("the {kind} backend is not compiled into this build (enable the `{feature}` feature)")]
    NotCompiled {
        /// API asked for.
        kind: DeviceKind,
        /// Cargo feature that enables it.
        feature: &'static str,
    },
    /// A device allocation failed.
    #[error("device {device}: cannot allocate {wanted} bytes ({free} bytes free of {total})")]
    OutOfMemory {
        /// Device, as text.
        device: String,
        /// Bytes asked for.
        wanted: u64,
        /// Bytes free when it failed.
        free: u64,
        /// Device total.
        total: u64,
    },
    /// A driver or runtime call failed.
    #[error("{op} failed: {reason}")]
    Driver {
        /// What was being done.
        op: String,
        /// The runtime's message.
        reason: String,
    },
    /// Runtime compilation of a kernel source failed.
    #[error("compiling {file} for {arch} failed:\n{log}")]
    Compile {
        /// Source file name.
        file: &'static str,
        /// Target architecture.
        arch: String,
        /// Compiler log.
        log: String,
    },
    /// A code object built ahead of time is missing or unusable.
    #[error("code object {path}: {reason}", path = path.display())]
    CodeObject {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A format has no kernel for this backend.
    #[error("no kernel for {format}: {reason}")]
    NoKernel {
        /// Format name.
        format: String,
        /// Why.
        reason: String,
    },
    /// A kernel launch failed.
    #[error("launching {entry} from {file} failed: {reason}")]
    Launch {
        /// Entry point.
        entry: &'static str,
        /// Source file name.
        file: &'static str,
        /// The runtime's message.
        reason: String,
    },
    /// Buffer sizes do not fit the operation.
    #[error("{op}: buffer of {have} bytes, {need} needed")]
    BufferSize {
        /// Operation.
        op: &'static str,
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A byte offset does not have the alignment the kernel ABI requires.
    #[error("{op}: offset {offset} is not a multiple of {align} bytes")]
    Misaligned {
        /// Operation.
        op: &'static str,
        /// The offset given.
        offset: usize,
        /// The alignment required.
        align: usize,
    },
    /// A size or offset computation does not fit in the host's address space.
    #[error("{op}: size overflows: {what}")]
    Overflow {
        /// Operation.
        op: &'static str,
        /// The sizes that overflowed.
        what: String,
    },
    /// A buffer from another backend or device was passed.
    #[error("{op}: buffer belongs to another device")]
    ForeignBuffer {
        /// Operation.
        op: &'static str,
    },
    /// Device memory handed in by the caller ([`crate::Backend::wrap_device_memory`]) cannot be
    /// used: not an allocation of this device, too short, misaligned or a null pointer.
    #[error("device memory at {ptr:#x} ({len} bytes): {reason}")]
    ForeignMemory {
        /// The address given.
        ptr: u64,
        /// The length given.
        len: usize,
        /// Why it is refused.
        reason: String,
    },
    /// The backend does not implement this operation (a pipeline primitive without offsets, for
    /// example).
    #[error("{op} is not supported by this backend: {reason}")]
    Unsupported {
        /// Operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
}
