//! Command-line interface: argument parsing and one module per subcommand.

mod bench;
mod dequant;
mod inspect;
mod load;
mod synth;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use quantforge::core::OutputDType;
use quantforge::gpu::{Backend, DeviceSpec};

/// Load GGUF weights onto GPUs and dequantize them there, bit-exact with ggml.
#[derive(Parser, Debug)]
#[command(name = "quantforge", version, about)]
pub struct Cli {
    /// More logging (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a file's metadata and tensor table.
    Inspect(inspect::Args),
    /// Write every tensor of a file as F32 into a new GGUF v3 file.
    Dequant(dequant::Args),
    /// Dequantize every tensor on a device and on the CPU and compare the bits.
    Verify(verify::Args),
    /// Load a whole model onto a device and report per tensor and in total.
    Load(load::Args),
    /// Time each format's dequantization against a memory copy.
    Bench(bench::Args),
    /// Write a synthetic model (real shapes and type mix, random weights) for benchmarks.
    Synth(synth::Args),
}

/// Sets up `tracing` output on stderr.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: in a pipe or a log file they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Dequant(a) => dequant::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Load(a) => load::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Synth(a) => synth::run(a),
    }
}

/// How a command reads the file: positioned reads (the default) or a mapping.
#[derive(clap::Args, Debug, Clone, Copy)]
struct ReadArgs {
    /// Map the file instead of reading it with positioned reads (the default). As fast, but a
    /// file truncated by another process while it is read kills this process with SIGBUS
    /// (docs/reliability.md).
    #[arg(long, conflicts_with = "no_mmap")]
    mmap: bool,
    /// Read the file with positioned reads, not a mapping (the default; kept for scripts).
    #[arg(long)]
    no_mmap: bool,
}

impl ReadArgs {
    /// Loader options with this choice and `fallback`.
    fn options(
        self,
        fallback: quantforge::loader::FallbackPolicy,
    ) -> quantforge::loader::LoaderOptions {
        quantforge::loader::LoaderOptions {
            mmap: self.mmap,
            fallback,
        }
    }
}

/// Parses `--dtype`.
fn parse_dtype(s: &str) -> Result<OutputDType, String> {
    OutputDType::from_name(s)
        .ok_or_else(|| format!("invalid dtype '{s}': expected f32, f16 or bf16"))
}

/// Opens the device named by `--device`, saying which one `auto` picked.
fn open_device(spec: DeviceSpec) -> Result<Option<Box<dyn Backend>>> {
    let backend =
        quantforge::device::open(spec).with_context(|| format!("opening device '{spec}'"))?;
    match (&backend, spec) {
        (Some(b), DeviceSpec::Auto) => eprintln!("device: auto picked {}", b.info()),
        (None, DeviceSpec::Auto) => eprintln!("device: auto found no GPU; using the CPU"),
        (Some(b), _) => eprintln!("device: {}", b.info()),
        (None, _) => eprintln!("device: cpu"),
    }
    Ok(backend)
}

/// The small model the repository carries, loaded when `load` is given no file.
fn default_model() -> PathBuf {
    let rel = Path::new("models/tiny-llama-q4_k_m.gguf");
    if rel.exists() {
        return rel.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `1.23 GB` style.
fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

/// `[256, 512]` style.
fn shape(dims: &[u64]) -> String {
    let d: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", d.join(", "))
}
