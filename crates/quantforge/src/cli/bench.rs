//! `quantforge bench [--device D] [--format NAME] [--json]`: dequantization throughput of each
//! registered format against a memory copy measured in the same run. A benchmark, not a test.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quantforge::core::cpu::{self, CpuPath};
use quantforge::core::{random_bytes, registry, OutputDType, QuantFormat};
use quantforge::gpu::bench::{bench_copy, bench_dequant, median, BenchConfig};
use quantforge::gpu::{Backend, DeviceSpec};
use rayon::prelude::*;
use serde::Serialize;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to run: auto, cpu, cuda[:N], hip[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Only this format (ggml name, e.g. q4_k). Repeatable. Default: every quantized format.
    #[arg(long = "format")]
    formats: Vec<String>,
    /// Output types to time on a device (the CPU produces f32).
    #[arg(long = "dtype", value_parser = super::parse_dtype)]
    dtypes: Vec<quantforge::core::OutputDType>,
    /// Elements per run on the CPU (default 2^20: cache-resident, as ggml's own quantize-perf
    /// test measures); on a device, sizes each launch to about 6 bytes
    /// per element moved (default 768 MiB per launch).
    #[arg(long)]
    elements: Option<usize>,
    /// Timed runs per figure (the median is reported), after warm-up.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of the result.
#[derive(Serialize, Debug)]
struct Row {
    format: String,
    device: String,
    dtype: String,
    elements: usize,
    seconds_median: f64,
    gelem_per_s: f64,
    gbytes_per_s: f64,
    copy_gbytes_per_s: f64,
}

fn selected_formats(names: &[String]) -> Result<Vec<&'static dyn QuantFormat>> {
    let all: Vec<_> = registry().iter().collect();
    if names.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|f| f.geometry().is_quantized())
            .collect());
    }
    names
        .iter()
        .map(|n| {
            all.iter()
                .copied()
                .find(|f| f.name().eq_ignore_ascii_case(n))
                .with_context(|| format!("no registered format named '{n}'"))
        })
        .collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let formats = selected_formats(&a.formats)?;
    let backend = super::open_device(a.device)?;
    let rows = match &backend {
        None => bench_cpu(&formats, &a)?,
        Some(b) => bench_device(b.as_ref(), &formats, &a)?,
    };
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        writeln!(
            out,
            "{:<8} {:<28} {:<5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>7}",
            "format", "device", "dtype", "elements", "ms", "Gelem/s", "GB/s", "copy GB/s", "% copy"
        )?;
        for r in &rows {
            writeln!(
                out,
                "{:<8} {:<28} {:<5} {:>12} {:>10.3} {:>10.3} {:>10.1} {:>10.1} {:>6.1}%",
                r.format,
                r.device,
                r.dtype,
                r.elements,
                r.seconds_median * 1e3,
                r.gelem_per_s,
                r.gbytes_per_s,
                r.copy_gbytes_per_s,
                100.0 * r.gbytes_per_s / r.copy_gbytes_per_s
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn round_to_blocks(f: &dyn QuantFormat, elements: usize) -> (usize, usize) {
    let g = f.geometry();
    let blocks = elements.div_ceil(g.block_elems).max(1);
    (blocks, blocks * g.block_elems)
}

fn bench_cpu(formats: &[&'static dyn QuantFormat], a: &Args) -> Result<Vec<Row>> {
    let elements = a.elements.unwrap_or(1 << 20);
    let fast = format!("cpu fast ({} threads)", rayon::current_num_threads());
    let mut rows = Vec::new();
    for &f in formats {
        let (blocks, n) = round_to_blocks(f, elements);
        // Blocks with finite scales of a realistic magnitude, as real weights have: no NaN or
        // subnormal arithmetic on the timed path.
        let mut src = random_bytes(
            blocks * f.geometry().block_bytes,
            0x5eed ^ f.ggml_type().0 as u64,
        );
        f.make_scales_finite(&mut src);
        let mut dst = vec![0f32; n];
        // Copy baseline of the same output size, in the same run, on the same threads.
        let copy_src = vec![1u8; n * 4];
        let mut copy_dst = vec![0u8; n * 4];
        let mut copy = || {
            let t = Instant::now();
            copy_dst
                .par_chunks_mut(1 << 16)
                .zip(copy_src.par_chunks(1 << 16))
                .for_each(|(d, s)| d.copy_from_slice(s));
            t.elapsed().as_secs_f64()
        };
        // The fast path on every core, and the reference (ggml's scalar loop, literally) on one
        // thread: the second row is the baseline the first is judged against.
        for (device, path) in [
            (fast.as_str(), CpuPath::Fast),
            ("cpu reference (1 thread)", CpuPath::Reference),
        ] {
            let mut times = Vec::with_capacity(a.iters);
            let mut copies = Vec::with_capacity(a.iters);
            for i in 0..a.iters + 2 {
                let t = Instant::now();
                cpu::dequantize(f, &src, &mut dst, path)?;
                let dt = t.elapsed().as_secs_f64();
                let ct = copy();
                if i >= 2 {
                    times.push(dt);
                    copies.push(ct);
                }
            }
            std::hint::black_box(&dst);
            rows.push(row(
                f,
                device,
                OutputDType::F32,
                n,
                src.len(),
                median(times),
                median(copies),
            ));
        }
    }
    Ok(rows)
}

fn row(
    f: &dyn QuantFormat,
    device: &str,
    dtype: OutputDType,
    n: usize,
    src_bytes: usize,
    secs: f64,
    copy_secs: f64,
) -> Row {
    let out_bytes = n * dtype.size();
    Row {
        format: f.name().to_string(),
        device: device.to_string(),
        dtype: dtype.name().to_string(),
        elements: n,
        seconds_median: secs,
        gelem_per_s: n as f64 / secs / 1e9,
        gbytes_per_s: (src_bytes + out_bytes) as f64 / secs / 1e9,
        copy_gbytes_per_s: 2.0 * out_bytes as f64 / copy_secs / 1e9,
    }
}

fn bench_device(
    b: &dyn Backend,
    formats: &[&'static dyn QuantFormat],
    a: &Args,
) -> Result<Vec<Row>> {
    let dtypes = if a.dtypes.is_empty() {
        OutputDType::ALL.to_vec()
    } else {
        a.dtypes.clone()
    };
    let device = b.info().label();
    // Size launches by bytes moved so that every format and dtype streams well past L2; inputs
    // rotate over several buffers (see quant_gpu::bench).
    let cfg = BenchConfig {
        bytes_per_launch: a.elements.map_or(768 << 20, |e| e * 6),
        iters: a.iters,
        ..BenchConfig::default()
    };
    let copy = bench_copy(b, &cfg)?;
    let mut rows = Vec::new();
    for &f in formats {
        if f.kernel().is_none() {
            eprintln!("{}: no kernel, skipped", f.name());
            continue;
        }
        let g = f.geometry();
        for &dtype in &dtypes {
            let r = bench_dequant(b, f, dtype, &cfg)?;
            let blocks = r.bytes_moved as usize / (g.block_bytes + g.block_elems * dtype.size());
            let n = blocks * g.block_elems;
            let secs = r.median_ms / 1e3;
            rows.push(Row {
                format: f.name().to_string(),
                device: device.clone(),
                dtype: dtype.name().to_string(),
                elements: n,
                seconds_median: secs,
                gelem_per_s: n as f64 / secs / 1e9,
                gbytes_per_s: r.gbps(),
                copy_gbytes_per_s: copy.gbps(),
            });
        }
    }
    Ok(rows)
}
