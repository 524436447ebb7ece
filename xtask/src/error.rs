//! [`XtaskError`]: everything a chore can fail with, with the file and tool involved.

use std::io;
use std::path::PathBuf;

use quant_core::CoreError;

/// Why a chore failed.
#[derive(Debug, thiserror::Error)]
pub enum XtaskError {
    /// A compiler is not installed (or not where we look).
    #[error(
        "{tool} not found (looked in: {looked}).\n{what}\nInstall the toolchains with `bash .ci/install-toolchains.sh` (as root), or set {env} to the compiler's path"
    )]
    MissingToolchain {
        /// The program (`"hipcc"`, `"nvcc"`).
        tool: &'static str,
        /// Where we looked, as text.
        looked: String,
        /// What the tool is for and which package brings it.
        what: &'static str,
        /// Environment variable that names the program explicitly.
        env: &'static str,
    },
    /// A compiler could not be started.
    #[error("cannot run {program}: {source}", program = program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A compiler rejected a kernel source.
    #[error("{compiler} failed on {file} for {target} ({status}):\n{output}")]
    Compile {
        /// Compiler name.
        compiler: &'static str,
        /// Source file, as the repository names it (`crates/quant-q4k/kernel.hip`).
        file: String,
        /// Target (`gfx90a`, `sm_90`).
        target: String,
        /// Exit status, as text.
        status: String,
        /// What the compiler printed (stderr, then stdout).
        output: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A produced code object is not what it should be.
    #[error("{path}: {reason}", path = path.display())]
    BadObject {
        /// The object file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry point named by a format's kernel spec is not in the produced object.
    #[error("{path}: entry point `{entry}` of {file} is not defined in the code object (has: {has})", path = path.display())]
    MissingEntry {
        /// The object file.
        path: PathBuf,
        /// The missing symbol.
        entry: String,
        /// Source file it should come from.
        file: String,
        /// Kernel symbols the object does define.
        has: String,
    },
    /// A built kernel fails a static bit-exactness check: a fused multiply-add (or another
    /// instruction that does not round like ggml's CPU code) in its machine code, or an AMD
    /// kernel descriptor whose float mode flushes denormals or does not round to nearest even.
    #[error("{format} for {target}: kernel `{kernel}` of {file} is not bit-exact: {what}")]
    NotExact {
        /// Format (`q4_k`).
        format: String,
        /// Target (`gfx90a`, `sm_90`).
        target: String,
        /// Kernel (function symbol) the offending instruction or descriptor belongs to.
        kernel: String,
        /// The instruction as the disassembler printed it and why it is refused, or the
        /// descriptor field and its value.
        what: String,
        /// Source file, as the repository names it (`quant-q4k/kernel.hip`).
        file: String,
    },
    /// A disassembler could not give a complete listing of a code object.
    #[error("{tool} on the {target} object of {format} ({file}): {reason}")]
    Disassembly {
        /// `llvm-objdump` or `cuobjdump`.
        tool: &'static str,
        /// Format.
        format: String,
        /// Target.
        target: String,
        /// Source file, as the repository names it.
        file: String,
        /// What went wrong (exit status and output, an undecodable word, a kernel missing from
        /// the listing).
        reason: String,
    },
    /// A kernel spec is unusable (for example an unsafe file name).
    #[error("kernel spec of {format}: {reason}")]
    BadSpec {
        /// Format name.
        format: String,
        /// Why.
        reason: String,
    },
    /// The format registry is inconsistent.
    #[error("format registry: {0}")]
    Registry(#[from] CoreError),
    /// No linked format has GPU kernels: the facade's features link nothing.
    #[error("no registered format has GPU kernels (is the quantforge facade linking the format crates?)")]
    NoKernels,
    /// Some builds failed; each failure was printed above.
    #[error("{failed} of {total} kernel builds failed (see above)")]
    Failed {
        /// Builds that failed.
        failed: usize,
        /// Builds attempted.
        total: usize,
    },
}
