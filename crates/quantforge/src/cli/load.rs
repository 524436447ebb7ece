//! `quantforge load [FILE] [--device D[,D...]] [--dtype f32|f16|bf16|native]
//! [--strategy pipelined|serial|cpu-dequant] [--mmap] [--bare-copy]`: the main job.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quantforge::gguf::Escaped;
use quantforge::gpu::{Backend, DeviceSpec};
use quantforge::loader::{
    FallbackPolicy, GgufLoader, LoadAs, LoadPath, LoadReport, PipelineOptions, Placement, Progress,
    Strategy,
};

/// Arguments of `load`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file. Default: the small model the repository carries
    /// (models/tiny-llama-q4_k_m.gguf).
    file: Option<PathBuf>,
    /// Where to load: auto (a GPU if present, else the CPU), cpu, cuda[:N], hip[:N], or a
    /// comma-separated list of GPUs (cuda:0,cuda:1) to spread whole layers over.
    #[arg(long, default_value = "auto")]
    device: String,
    /// What to put on the device: values (f32, f16, bf16), or native (the quantized blocks
    /// untouched, for engines with fused kernels).
    #[arg(long, default_value = "f32", value_parser = parse_load_as)]
    dtype: LoadAs,
    /// pipelined (ring of pinned slots, copy and compute queues), serial (tensor by tensor), or
    /// cpu-dequant (a baseline: CPU dequantization, pageable upload).
    #[arg(long, default_value = "pipelined", value_parser = parse_strategy)]
    strategy: Strategy,
    /// Ring slots of the pipeline, in all, shared out among the readers.
    #[arg(long, default_value_t = PipelineOptions::default().ring_slots)]
    ring_slots: usize,
    /// MiB per ring slot.
    #[arg(long, default_value_t = PipelineOptions::default().slot_bytes >> 20)]
    slot_mib: usize,
    /// Reader threads, each filling its own ring slots and issuing them.
    #[arg(long, default_value_t = PipelineOptions::default().readers)]
    readers: usize,
    /// Fail instead of falling back to the CPU when a kernel cannot run.
    #[arg(long)]
    no_fallback: bool,
    #[command(flatten)]
    read: super::ReadArgs,
    /// With --mmap: fill the ring with positioned reads of the file (pread) instead of copying
    /// out of the mapping.
    #[arg(long)]
    direct_reads: bool,
    /// Measure, don't load: read every tensor's bytes into the ring and copy them to the
    /// device through it, with no outputs and no kernels (the bare loop a load is held to).
    #[arg(long, conflicts_with = "strategy")]
    bare_copy: bool,
    /// Print the totals only, not the per-tensor table.
    #[arg(long)]
    quiet: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print this process's host memory figures at the end (Linux: /proc/self/status).
    #[arg(long)]
    mem: bool,
}

fn parse_load_as(s: &str) -> Result<LoadAs, String> {
    LoadAs::from_name(s)
        .ok_or_else(|| format!("invalid dtype '{s}': expected f32, f16, bf16 or native"))
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::from_name(s)
        .ok_or_else(|| format!("invalid strategy '{s}': expected pipelined, serial or cpu-dequant"))
}

fn bar(total: u64, hidden: bool) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta} {msg}",
        )
        .expect("static template"),
    );
    bar
}

pub fn run(a: Args) -> Result<ExitCode> {
    let path = a.file.clone().unwrap_or_else(super::default_model);
    let options = a.read.options(if a.no_fallback {
        FallbackPolicy::Deny
    } else {
        FallbackPolicy::Allow
    });
    let pipe = PipelineOptions {
        strategy: a.strategy,
        ring_slots: a.ring_slots.max(1),
        slot_bytes: a.slot_mib.max(1) << 20,
        readers: a.readers.max(1),
        direct_reads: a.direct_reads,
    };
    let specs = quantforge::device::parse_list(&a.device)?;
    let loader = GgufLoader::open_with(&path, options)?;
    let total: u64 = loader.file().tensors().map(|t| t.n_bytes).sum();

    if specs.len() > 1 {
        return run_placed(&a, &path, &loader, &specs, &pipe, total);
    }
    let backend = super::open_device(specs[0])?;
    let bar = bar(total, a.no_progress);
    let wall = Instant::now();
    let mut progress = |p: &Progress| match p {
        Progress::Bytes(n) => bar.inc(*n),
        Progress::Tensor(t) => bar.set_message(Escaped(&t.name).to_string()),
    };
    // The tensors are dropped after the wall time is taken, as an engine would keep them.
    let (report, _tensors) = match (&backend, a.bare_copy) {
        (Some(b), true) => (loader.bare_copy(b.as_ref(), &pipe, &mut progress)?, None),
        (Some(b), false) => {
            let loaded = loader.load_with(b.as_ref(), a.dtype, &pipe, &mut progress)?;
            (loaded.report, Some(loaded.tensors))
        }
        (None, true) => bail!("--bare-copy measures a copy to a GPU; there is none"),
        (None, false) => {
            let loaded = loader.load_all_to_host(a.dtype, &mut |l| {
                // The bar counts file bytes, as on a device.
                bar.inc(loader.file().tensor(&l.name).map_or(0, |t| t.n_bytes));
                bar.set_message(Escaped(&l.name).to_string());
            })?;
            (loaded.report, None)
        }
    };
    let wall = wall.elapsed();
    bar.finish_and_clear();
    print_report(&path, &report, a.quiet);
    // On the CPU there is no upload, so no strategy: say where the values went instead.
    let how = match &backend {
        Some(_) if a.bare_copy => "the bare copy loop".to_string(),
        Some(_) => format!("{:?}", a.strategy),
        None => "the CPU fast path".to_string(),
    };
    finish(&a, total, wall, &how, report.fallbacks())
}

/// The summary line, the memory figures if asked for, and the exit status: shared by one
/// device and several.
fn finish(
    a: &Args,
    total: u64,
    wall: std::time::Duration,
    how: &str,
    fallbacks: usize,
) -> Result<ExitCode> {
    println!(
        "load: {} as {} with {how}: {:.3} s wall, {:.2} GB/s of file bytes",
        super::human_bytes(total),
        a.dtype,
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64() / 1e9
    );
    if a.mem {
        print_memory();
    }
    if a.no_fallback && fallbacks > 0 {
        bail!("{fallbacks} tensor(s) fell back to the CPU");
    }
    Ok(ExitCode::SUCCESS)
}

/// Several GPUs: plan, print the placement, load every share at once.
fn run_placed(
    a: &Args,
    path: &std::path::Path,
    loader: &GgufLoader,
    specs: &[DeviceSpec],
    pipe: &PipelineOptions,
    total: u64,
) -> Result<ExitCode> {
    let backends = quantforge::device::open_all(specs).context("opening the devices")?;
    let mut mem = Vec::new();
    for (s, b) in specs.iter().zip(&backends) {
        eprintln!("device: {}", b.info());
        mem.push(b.mem_info().with_context(|| format!("memory of {s}"))?);
    }
    let labels: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    // Keep room for the device ring and the runtime's own allocations.
    let reserve = pipe.ring_bytes() + (512 << 20);
    let placement = Placement::plan_with(loader.file(), &mem, &labels, a.dtype, reserve)?;
    println!("placement of {} ({}):", path.display(), a.dtype);
    for (l, d) in labels.iter().zip(&placement.devices) {
        let layers = match (d.layers.first(), d.layers.last()) {
            (Some(f), Some(l)) => format!("layers {f}..={l} ({})", d.layers.len()),
            _ => "no layers".to_string(),
        };
        println!(
            "  {l}: {layers}, {} tensors, {} ({} free)",
            d.tensors.len(),
            super::human_bytes(d.bytes),
            super::human_bytes(d.free)
        );
    }
    let refs: Vec<&dyn Backend> = backends.iter().map(|b| b.as_ref()).collect();
    let bar = bar(total, a.no_progress);
    let wall = Instant::now();
    let loaded = loader.load_placed(&refs, &placement, a.dtype, pipe, &|p| {
        if let Progress::Bytes(n) = p {
            bar.inc(*n)
        }
    })?;
    let wall = wall.elapsed();
    bar.finish_and_clear();
    let reports: Vec<&LoadReport> = loaded.iter().map(|l| &l.report).collect();
    for r in &reports {
        print_report(path, r, a.quiet);
    }
    let how = format!(
        "{:?} over {} devices in parallel",
        a.strategy,
        reports.len()
    );
    finish(
        a,
        total,
        wall,
        &how,
        reports.iter().map(|r| r.fallbacks()).sum(),
    )
}

/// Host memory of this process: peak resident set (VmHWM), and now its anonymous, file-backed
/// and shared parts. The mapped model is file-backed, so `VmHWM - RssFile` bounds what the load
/// took beyond the page cache (file pages stay mapped, hence resident, until exit).
fn print_memory() {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        println!("host memory: /proc/self/status unavailable");
        return;
    };
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let (hwm, anon, file, shmem) = (
        kib("VmHWM:").unwrap_or(0),
        kib("RssAnon:").unwrap_or(0),
        kib("RssFile:").unwrap_or(0),
        kib("RssShmem:").unwrap_or(0),
    );
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "host memory: VmHWM {:.1} MiB, RssAnon {:.1} MiB, RssFile {:.1} MiB, RssShmem {:.1} MiB; \
         peak minus file-backed {:.1} MiB",
        mib(hwm),
        mib(anon),
        mib(file),
        mib(shmem),
        mib(hwm.saturating_sub(file))
    );
}

fn print_report(path: &std::path::Path, r: &LoadReport, quiet: bool) {
    println!("loaded {} onto {}", path.display(), r.device);
    if !quiet {
        println!(
            "{:<28} {:<6} {:<14} {:>6} {:>11} {:>11} {:>9} {:>8}  path",
            "tensor", "type", "shape", "dtype", "uploaded", "produced", "ms", "GB/s"
        );
        for t in &r.tensors {
            // An integer tensor is kept as it is: its type stands in for a values dtype.
            let (dtype, path) = if t.path == LoadPath::Kept {
                (t.ty.to_string(), format!("kept as {}", t.ty))
            } else {
                (t.dtype.name().to_string(), t.path.label().to_string())
            };
            let secs = t.time.as_secs_f64();
            let gbs = if secs > 0.0 {
                (t.bytes_uploaded + t.bytes_produced) as f64 / secs / 1e9
            } else {
                0.0
            };
            println!(
                "{:<28} {:<6} {:<14} {:>6} {:>11} {:>11} {:>9.3} {:>8.2}  {}",
                Escaped(&t.name),
                t.ty.to_string(),
                super::shape(&t.shape),
                dtype,
                super::human_bytes(t.bytes_uploaded),
                super::human_bytes(t.bytes_produced),
                secs * 1e3,
                gbs,
                path
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
    if r.kept() > 0 {
        println!(
            "kept: {} integer tensor(s) as they are (indices/ids, not weights)",
            r.kept()
        );
    }
    for t in &r.tensors {
        if let LoadPath::Fallback(why) = &t.path {
            println!("fallback: {}: {why}", Escaped(&t.name));
        }
    }
}
