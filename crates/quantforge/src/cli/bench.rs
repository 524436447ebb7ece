//! `quantforge bench [--device D] [--format NAME] [--json]`: dequantization throughput of each
//! registered format against a memory copy measured in the same run. A benchmark, not a test.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quantforge::core::cpu::{self, CpuPath};
use quantforge::core::{registry, OutputDType, QuantFormat};
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
    /// Elements per run (default: 2^25 on the CPU, 2^28 on a device).
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

/// Deterministic pseudo-random bytes (splitmix64): every bit pattern of scales occurs.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    out.par_chunks_mut(8 * 4096)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut s = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for c in chunk.chunks_mut(8) {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                c.copy_from_slice(&z.to_le_bytes()[..c.len()]);
            }
        });
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn selected_formats(names: &[String]) -> Result<Vec<&'static dyn QuantFormat>> {
    let all: Vec<_> = registry().iter().collect();
    if names.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|f| f.geometry().block_elems > 1)
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
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<8} {:<28} {:<5} {:>12} {:>10} {:>10} {:>10} {:>10} {:>7}",
            "format", "device", "dtype", "elements", "ms", "Gelem/s", "GB/s", "copy GB/s", "% copy"
        );
        for r in &rows {
            println!(
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
            );
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
    let elements = a.elements.unwrap_or(1 << 25);
    let device = format!("cpu ({} threads)", rayon::current_num_threads());
    let mut rows = Vec::new();
    for &f in formats {
        let (blocks, n) = round_to_blocks(f, elements);
        let src = random_bytes(
            blocks * f.geometry().block_bytes,
            0x5eed ^ f.ggml_type().0 as u64,
        );
        let mut dst = vec![0f32; n];
        // Copy baseline of the same output size, in the same run, on the same threads.
        let copy_src = vec![1u8; n * 4];
        let mut copy_dst = vec![0u8; n * 4];
        let mut times = Vec::with_capacity(a.iters);
        let mut copies = Vec::with_capacity(a.iters);
        for i in 0..a.iters + 2 {
            let t = Instant::now();
            cpu::dequantize(f, &src, &mut dst, CpuPath::Fast)?;
            let dt = t.elapsed().as_secs_f64();
            let t = Instant::now();
            copy_dst
                .par_chunks_mut(1 << 20)
                .zip(copy_src.par_chunks(1 << 20))
                .for_each(|(d, s)| d.copy_from_slice(s));
            let ct = t.elapsed().as_secs_f64();
            if i >= 2 {
                times.push(dt);
                copies.push(ct);
            }
        }
        std::hint::black_box(&dst);
        std::hint::black_box(&copy_dst);
        rows.push(row(
            f,
            &device,
            OutputDType::F32,
            n,
            src.len(),
            median(times),
            median(copies),
        ));
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
    let elements = a.elements.unwrap_or(1 << 28);
    let dtypes = if a.dtypes.is_empty() {
        OutputDType::ALL.to_vec()
    } else {
        a.dtypes.clone()
    };
    let device = format!("{}:{} {}", b.info().kind, b.info().ordinal, b.info().name);
    let mut rows = Vec::new();
    for &f in formats {
        let Some(spec) = f.kernel() else {
            eprintln!("{}: no kernel, skipped", f.name());
            continue;
        };
        let g = f.geometry();
        let (blocks, n) = round_to_blocks(f, elements);
        let host = random_bytes(blocks * g.block_bytes, 0x5eed ^ f.ggml_type().0 as u64);
        let mut src = b.alloc(host.len())?;
        b.upload(&host, &mut src)?;
        for &dtype in &dtypes {
            let out_bytes = n * dtype.size();
            let mut dst = b.alloc(out_bytes)?;
            let mut copy_src = b.alloc(out_bytes)?;
            let mut copy_dst = b.alloc(out_bytes)?;
            b.fill(&mut copy_src, 0x3c)?;
            // Warm-up: module build or load, caches, clocks.
            for _ in 0..3 {
                b.dequantize(spec, g.block_elems, &src, blocks as u64, &mut dst, dtype)?;
                b.copy(&copy_src, &mut copy_dst)?;
            }
            b.synchronize()?;
            let times = b.time_events(a.iters, &mut || {
                b.dequantize(spec, g.block_elems, &src, blocks as u64, &mut dst, dtype)
            })?;
            let copies = b.time_events(a.iters, &mut || b.copy(&copy_src, &mut copy_dst))?;
            let ms = |v: Vec<f32>| median(v.into_iter().map(|x| x as f64 / 1e3).collect());
            rows.push(row(f, &device, dtype, n, host.len(), ms(times), ms(copies)));
        }
    }
    Ok(rows)
}
