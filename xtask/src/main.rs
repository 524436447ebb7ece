//! `cargo xtask`: quantforge's project chores (`.cargo/config.toml` aliases `cargo xtask`).
//!
//! * `cargo xtask build-kernels [--hip-only|--cuda-only] [--out DIR] [-j N]`: compiles every
//!   registered format's kernel source ahead of time, to HSACO with `hipcc` for gfx906, gfx908,
//!   gfx90a, gfx940 and gfx1030 and to cubin with `nvcc` for sm_80 and sm_90, checks that each
//!   object defines the spec's entry points, proves statically that it is bit-exact (its
//!   disassembly holds no fused multiply-add or flush-to-zero; each AMD kernel descriptor keeps
//!   denormals and rounds to nearest even: [`exact`]), and writes
//!   `<out>/<format>/<arch>.{hsaco,cubin}` (default `target/kernels`, which `quant-rocm` embeds
//!   at build time).
#![warn(missing_docs)]

mod build_kernels;
mod elf;
mod error;
mod exact;
mod toolchain;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

// Link every format crate the facade's features enable, so their registrations exist.
use quantforge as _;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "quantforge project chores")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile every registered format's kernels to HSACO and cubin.
    BuildKernels(BuildArgs),
}

#[derive(Args)]
struct BuildArgs {
    /// Build HSACO only (hipcc).
    #[arg(long, conflicts_with = "cuda_only")]
    hip_only: bool,
    /// Build cubins only (nvcc).
    #[arg(long)]
    cuda_only: bool,
    /// Output folder [default: $QF_KERNELS_DIR, else the kernels folder of the target directory].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compilers to run at once [default: the number of cores].
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
}

/// Where code objects go by default, the same rule `quant-rocm`'s build script reads them by:
/// `$QF_KERNELS_DIR`, else `$CARGO_TARGET_DIR/kernels`, else `<workspace>/target/kernels`.
fn default_kernels_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("QF_KERNELS_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("kernels");
    }
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask
        .parent()
        .unwrap_or(xtask)
        .join("target")
        .join("kernels")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::BuildKernels(a) => {
            let opts = build_kernels::Options {
                hip: !a.cuda_only,
                cuda: !a.hip_only,
                out: a.out.unwrap_or_else(default_kernels_dir),
                jobs: a
                    .jobs
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            };
            build_kernels::run(&opts).map(|_| ())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
