//! `quantforge load [FILE] [--device D] [--dtype f32|f16|bf16]`: the main job.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quantforge::core::OutputDType;
use quantforge::gpu::DeviceSpec;
use quantforge::loader::{FallbackPolicy, GgufLoader, LoadReport, LoaderOptions};

/// Arguments of `load`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file. Default: the small model the repository carries
    /// (models/tiny-llama-q4_k_m.gguf).
    file: Option<PathBuf>,
    /// Where to load: auto (a GPU if present, else the CPU), cpu, cuda[:N], hip[:N].
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// Element type on the device.
    #[arg(long, default_value = "f32", value_parser = super::parse_dtype)]
    dtype: OutputDType,
    /// Fail instead of falling back to the CPU when a kernel cannot run.
    #[arg(long)]
    no_fallback: bool,
    /// Read the file with ordinary reads instead of mapping it.
    #[arg(long)]
    no_mmap: bool,
    /// Print the totals only, not the per-tensor table.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let path = a.file.clone().unwrap_or_else(super::default_model);
    let options = LoaderOptions {
        mmap: !a.no_mmap,
        fallback: if a.no_fallback {
            FallbackPolicy::Deny
        } else {
            FallbackPolicy::Allow
        },
    };
    let loader = GgufLoader::open_with(&path, options)?;
    let backend = super::open_device(a.device)?;
    let total: u64 = loader.file().tensors().iter().map(|t| t.n_bytes).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .expect("static template"),
    );
    let quant_bytes: std::collections::HashMap<String, u64> = loader
        .file()
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.n_bytes))
        .collect();
    let mut progress = |l: &quantforge::loader::TensorLoad| {
        bar.inc(quant_bytes.get(&l.name).copied().unwrap_or(0));
        bar.set_message(l.name.clone());
    };
    let report = match &backend {
        Some(b) => loader.load_all_with_progress(b.as_ref(), a.dtype, &mut progress)?,
        None => loader.load_all_to_host(a.dtype, &mut progress)?.1,
    };
    bar.finish_and_clear();
    print_report(&path, &report, a.quiet);
    if a.no_fallback && report.fallbacks() > 0 {
        bail!("{} tensor(s) fell back to the CPU", report.fallbacks());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(path: &std::path::Path, r: &LoadReport, quiet: bool) {
    println!("loaded {} onto {}", path.display(), r.device);
    if !quiet {
        println!(
            "{:<28} {:<6} {:<14} {:>5} {:>11} {:>11} {:>9} {:>8}  path",
            "tensor", "type", "shape", "dtype", "uploaded", "produced", "ms", "GB/s"
        );
        for t in &r.tensors {
            let secs = t.time.as_secs_f64();
            let gbs = if secs > 0.0 {
                (t.bytes_uploaded + t.bytes_produced) as f64 / secs / 1e9
            } else {
                0.0
            };
            println!(
                "{:<28} {:<6} {:<14} {:>5} {:>11} {:>11} {:>9.3} {:>8.2}  {}",
                t.name,
                t.ty.to_string(),
                super::shape(&t.shape),
                t.dtype.name(),
                super::human_bytes(t.bytes_uploaded),
                super::human_bytes(t.bytes_produced),
                secs * 1e3,
                gbs,
                t.path.label()
            );
        }
    }
    println!(
        "total: {} tensors, {} uploaded, {} produced, {:.3} ms, {:.2} GB/s, {} fallback(s)",
        r.tensors.len(),
        super::human_bytes(r.bytes_uploaded()),
        super::human_bytes(r.bytes_produced()),
        r.total_time.as_secs_f64() * 1e3,
        r.gbytes_per_s(),
        r.fallbacks()
    );
    for t in &r.tensors {
        if let quantforge::loader::LoadPath::Fallback(why) = &t.path {
            println!("fallback: {}: {why}", t.name);
        }
    }
}
