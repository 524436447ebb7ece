//! `quantforge bench [--device D] [--format NAME] [--json]`: dequantization throughput of each
//! registered format against a memory copy measured in the same run. A benchmark, not a test.
//!
//! `--resident` (a GPU only) times each kernel on data that stays in L2 instead, many launches
//! back to back per timed run (`quant_gpu::bench::bench_resident_dequant`): the kernel's compute
//! ceiling and the memory bandwidth it could feed. Its `--json` is one object:
//!
//! ```text
//! { "mode": "resident", "device": "cuda:0 (NVIDIA H100 80GB HBM3)",
//!   "budget_bytes": 24000000, "launches_per_run": 200, "runs": 20, "queues": 1,
//!   "copy": { "bytes_moved", "us_per_launch", "host_us_per_launch", "launch_bound",
//!             "gbytes_per_s", "before_gbytes_per_s", "after_gbytes_per_s" },
//!   "rows": [ { "format", "dtype", "blocks", "elements", "bytes_per_element",
//!               "us_per_launch", "us_per_launch_min", "us_per_launch_max",
//!               "host_us_per_launch", "launch_bound", "gelem_per_s",
//!               "fed_gbytes_per_s", "copy_gbytes_per_s", "waves" }, ... ] }
//! ```
//!
//! `copy` is the better of a resident copy before and one after the kernels (both figures
//! given), moving the budget (half read, half written). `elements` and `blocks` are per launch; `us_per_launch` is the median over runs of a run's
//! device time divided by its launches; `fed_gbytes_per_s` = `gelem_per_s` ×
//! `bytes_per_element` (block bytes per element plus the output type's size); `launch_bound`
//! says the host took nearly as long to issue the launches as the device to run them, so the
//! figure is a floor (a larger `--resident-mb` helps). Each launch is cut down to whole waves of
//! the groups the device runs at once (its multiprocessors times the kernel's occupancy);
//! `waves` says how many (`null` where the backend cannot say). With `--queues N` the data is
//! split into N parts, each launched on a queue of its own, so that the gaps between launches
//! on one queue overlap other parts' kernels; a "launch" is then one round over the N parts.
//! The ordinary bench's JSON (an array of rows) is unchanged.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use quantforge::core::cpu::{self, CpuPath};
use quantforge::core::{random_bytes, registry, OutputDType, QuantFormat};
use quantforge::gpu::bench::{
    bench_copy, bench_dequant, bench_resident_copy, bench_resident_dequant, median, BenchConfig,
    ResidentConfig, ResidentResult,
};
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
    #[arg(long, conflicts_with = "resident")]
    elements: Option<usize>,
    /// Timed runs per figure (the median is reported), after warm-up.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// On a GPU: time each kernel on data resident in L2 (input plus output within
    /// --resident-mb), --launches launches per timed run: the kernel's compute ceiling and the
    /// memory bandwidth it could feed, next to a resident copy.
    #[arg(long)]
    resident: bool,
    /// With --resident: input plus output bytes per launch, at most, in MB (10^6 bytes). Keep
    /// it well under the card's L2 (50 MB on an H100, 60 MB on an H200).
    #[arg(long, default_value_t = 24.0, requires = "resident")]
    resident_mb: f64,
    /// With --resident: launches back to back between the two events of one timed run (at
    /// least 100, so that one launch's latency does not dominate).
    #[arg(long, default_value_t = 200, requires = "resident")]
    launches: usize,
    /// With --resident: split the data into this many parts, each launched on a queue of its
    /// own, so that one part's kernel runs while another's launch starts or drains.
    #[arg(long, default_value_t = 1, requires = "resident")]
    queues: usize,
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
    if a.resident {
        return run_resident(&a, &formats, &mut out);
    }
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

/// `--resident --json`: the whole run (see the module docs).
#[derive(Serialize, Debug)]
struct ResidentReport {
    mode: &'static str,
    device: String,
    budget_bytes: usize,
    launches_per_run: usize,
    runs: usize,
    queues: usize,
    copy: ResidentCopy,
    rows: Vec<ResidentRow>,
}

/// The resident copy: the better of one before and one after the kernels.
#[derive(Serialize, Debug)]
struct ResidentCopy {
    bytes_moved: u64,
    us_per_launch: f64,
    host_us_per_launch: f64,
    launch_bound: bool,
    gbytes_per_s: f64,
    before_gbytes_per_s: f64,
    after_gbytes_per_s: f64,
}

/// One format and output type, resident in L2; figures per launch.
#[derive(Serialize, Debug)]
struct ResidentRow {
    format: String,
    dtype: String,
    blocks: u64,
    elements: u64,
    bytes_per_element: f64,
    us_per_launch: f64,
    us_per_launch_min: f64,
    us_per_launch_max: f64,
    host_us_per_launch: f64,
    launch_bound: bool,
    gelem_per_s: f64,
    fed_gbytes_per_s: f64,
    copy_gbytes_per_s: f64,
    /// Waves of groups one launch is (whole, unless under one), where the backend can say.
    waves: Option<f64>,
}

/// The resident measurement's sizes from the arguments, checked.
fn resident_config(a: &Args) -> Result<ResidentConfig> {
    if a.launches < 100 {
        bail!(
            "--launches must be at least 100: fewer would time the launch latency, not the kernel"
        );
    }
    if !(a.resident_mb.is_finite() && a.resident_mb > 0.0) {
        bail!("--resident-mb must be a positive number of MB");
    }
    if !(1..=64).contains(&a.queues) {
        bail!("--queues must be between 1 and 64");
    }
    Ok(ResidentConfig {
        budget_bytes: (a.resident_mb * 1e6) as usize,
        launches_per_run: a.launches,
        runs: a.iters,
        queues: a.queues,
    })
}

/// `bench --resident`: needs a GPU; the CPU bench is cache-resident already.
fn run_resident(
    a: &Args,
    formats: &[&'static dyn QuantFormat],
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let cfg = resident_config(a)?;
    if matches!(a.device, DeviceSpec::Cpu) {
        bail!(
            "--resident times GPU kernels on data held in L2: pass --device cuda[:N], hip[:N] or \
             auto (on the CPU, the ordinary bench is cache-resident already)"
        );
    }
    let Some(b) = super::open_device(a.device)? else {
        bail!("--resident needs a GPU, and --device auto found none");
    };
    let report = bench_resident(b.as_ref(), formats, a, &cfg)?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_resident(&report, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_resident(
    b: &dyn Backend,
    formats: &[&'static dyn QuantFormat],
    a: &Args,
    cfg: &ResidentConfig,
) -> Result<ResidentReport> {
    let dtypes = if a.dtypes.is_empty() {
        OutputDType::ALL.to_vec()
    } else {
        a.dtypes.clone()
    };
    let before = bench_resident_copy(b, cfg)?;
    let mut results = Vec::new();
    for &f in formats {
        if f.kernel().is_none() {
            eprintln!("{}: no kernel, skipped", f.name());
            continue;
        }
        for &dtype in &dtypes {
            let r = bench_resident_dequant(b, f, dtype, cfg)
                .with_context(|| format!("{} -> {dtype}", f.name()))?;
            results.push((f, dtype, r));
        }
    }
    let after = bench_resident_copy(b, cfg)?;
    let copy_gbps = before.gbps().max(after.gbps());
    let rows = results
        .into_iter()
        .map(|(f, dtype, r)| resident_row(f, dtype, &r, copy_gbps))
        .collect();
    Ok(ResidentReport {
        mode: "resident",
        device: b.info().label(),
        budget_bytes: cfg.budget_bytes,
        launches_per_run: cfg.launches_per_run,
        runs: cfg.runs,
        queues: cfg.queues,
        copy: resident_copy(before, after),
        rows,
    })
}

/// One row of the resident table from a measurement; times in microseconds.
fn resident_row(
    f: &dyn QuantFormat,
    dtype: OutputDType,
    r: &ResidentResult,
    copy_gbps: f64,
) -> ResidentRow {
    ResidentRow {
        format: f.name().to_string(),
        dtype: dtype.name().to_string(),
        blocks: r.elements / f.geometry().block_elems as u64,
        elements: r.elements,
        bytes_per_element: r.bytes_per_element(),
        us_per_launch: r.median_ms * 1e3,
        us_per_launch_min: r.min_ms * 1e3,
        us_per_launch_max: r.max_ms * 1e3,
        host_us_per_launch: r.host_ms * 1e3,
        launch_bound: r.launch_bound(),
        gelem_per_s: r.gelem_per_s(),
        fed_gbytes_per_s: r.fed_gbps(),
        copy_gbytes_per_s: copy_gbps,
        waves: r.waves,
    }
}

/// The better of the copies before and after the kernels, with both figures.
fn resident_copy(before: ResidentResult, after: ResidentResult) -> ResidentCopy {
    let (before_gbps, after_gbps) = (before.gbps(), after.gbps());
    let best = if after_gbps > before_gbps {
        after
    } else {
        before
    };
    ResidentCopy {
        bytes_moved: best.bytes_moved,
        us_per_launch: best.median_ms * 1e3,
        host_us_per_launch: best.host_ms * 1e3,
        launch_bound: best.launch_bound(),
        gbytes_per_s: best.gbps(),
        before_gbytes_per_s: before_gbps,
        after_gbytes_per_s: after_gbps,
    }
}

fn print_resident(r: &ResidentReport, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "{}: resident, input + output <= {:.1} MB over {} queue(s), {} launches per run, \
         median of {} runs",
        r.device,
        r.budget_bytes as f64 / 1e6,
        r.queues,
        r.launches_per_run,
        r.runs
    )?;
    let c = &r.copy;
    writeln!(
        out,
        "copy: {:.1} MB moved, {:.2} us per launch, {:.1} GB/s (before {:.1}, after {:.1}){}",
        c.bytes_moved as f64 / 1e6,
        c.us_per_launch,
        c.gbytes_per_s,
        c.before_gbytes_per_s,
        c.after_gbytes_per_s,
        if c.launch_bound { "  launch-bound" } else { "" }
    )?;
    writeln!(
        out,
        "{:<8} {:<5} {:>10} {:>6} {:>7} {:>9} {:>9} {:>10} {:>8} {:>7}",
        "format",
        "dtype",
        "elements",
        "waves",
        "B/elem",
        "us",
        "host us",
        "Gelem/s",
        "fed GB/s",
        "% copy"
    )?;
    for w in &r.rows {
        writeln!(
            out,
            "{:<8} {:<5} {:>10} {:>6} {:>7.4} {:>9.2} {:>9.2} {:>10.1} {:>8.1} {:>6.1}%{}",
            w.format,
            w.dtype,
            w.elements,
            w.waves.map_or("-".into(), |v| format!("{v:.2}")),
            w.bytes_per_element,
            w.us_per_launch,
            w.host_us_per_launch,
            w.gelem_per_s,
            w.fed_gbytes_per_s,
            100.0 * w.fed_gbytes_per_s / w.copy_gbytes_per_s,
            if w.launch_bound { "  launch-bound" } else { "" }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(label: &str, elements: u64, bytes_moved: u64, median_ms: f64) -> ResidentResult {
        ResidentResult {
            label: label.into(),
            elements,
            bytes_moved,
            launches_per_run: 200,
            runs: 20,
            queues: 1,
            median_ms,
            min_ms: median_ms * 0.9,
            max_ms: median_ms * 1.5,
            host_ms: median_ms / 4.0,
            waves: Some(3.0),
        }
    }

    fn q4_k() -> &'static dyn QuantFormat {
        registry().iter().find(|f| f.name() == "Q4_K").unwrap()
    }

    #[test]
    fn a_resident_row_has_per_launch_figures_in_microseconds() {
        // 36585 Q4_K blocks to f16 (the 24 MB default): 9 365 760 values and
        // 36585 * (144 + 512) = 23 999 760 bytes moved, in 8 µs a launch.
        let r = result("Q4_K->f16", 36585 * 256, 36585 * 656, 0.008);
        let w = resident_row(q4_k(), OutputDType::F16, &r, 7000.0);
        assert_eq!((w.format.as_str(), w.dtype.as_str()), ("Q4_K", "f16"));
        assert_eq!((w.blocks, w.elements), (36585, 9_365_760));
        assert!((w.bytes_per_element - (144.0 / 256.0 + 2.0)).abs() < 1e-12);
        assert!((w.us_per_launch - 8.0).abs() < 1e-9);
        assert!((w.us_per_launch_max - 12.0).abs() < 1e-9);
        assert!((w.host_us_per_launch - 2.0).abs() < 1e-9 && !w.launch_bound);
        // 9 365 760 values in 8 µs: 1170.72 Gelem/s, × 2.5625 B = 2999.97 GB/s fed.
        assert!((w.gelem_per_s - 1170.72).abs() < 1e-6);
        assert!((w.fed_gbytes_per_s - 23_999_760.0 / 8e-6 / 1e9).abs() < 1e-6);
        assert_eq!(w.copy_gbytes_per_s, 7000.0);
    }

    #[test]
    fn the_resident_copy_is_the_better_of_before_and_after() {
        let before = result("copy", 0, 24_000_000, 0.004); // 6000 GB/s
        let after = result("copy", 0, 24_000_000, 0.003); // 8000 GB/s
        let c = resident_copy(before.clone(), after.clone());
        assert!((c.gbytes_per_s - 8000.0).abs() < 1e-6);
        assert!((c.us_per_launch - 3.0).abs() < 1e-9);
        assert!((c.before_gbytes_per_s - 6000.0).abs() < 1e-6);
        let c = resident_copy(after, before);
        assert!((c.gbytes_per_s - 8000.0).abs() < 1e-6);
        assert!((c.after_gbytes_per_s - 6000.0).abs() < 1e-6);
    }

    #[test]
    fn the_resident_json_has_the_documented_fields() {
        let copy = result("copy", 0, 24_000_000, 0.004);
        let r = result("Q4_K->f32", 256, 144 + 1024, 0.001);
        let report = ResidentReport {
            mode: "resident",
            device: "cuda:0 (test)".into(),
            budget_bytes: 24_000_000,
            launches_per_run: 200,
            runs: 20,
            queues: 4,
            copy: resident_copy(copy.clone(), copy),
            rows: vec![resident_row(q4_k(), OutputDType::F32, &r, 6000.0)],
        };
        let v = serde_json::to_value(&report).unwrap();
        for key in [
            "mode",
            "device",
            "budget_bytes",
            "launches_per_run",
            "runs",
            "queues",
        ] {
            assert!(!v[key].is_null(), "missing {key}");
        }
        for key in [
            "bytes_moved",
            "us_per_launch",
            "host_us_per_launch",
            "launch_bound",
            "gbytes_per_s",
            "before_gbytes_per_s",
            "after_gbytes_per_s",
        ] {
            assert!(!v["copy"][key].is_null(), "missing copy.{key}");
        }
        for key in [
            "format",
            "dtype",
            "blocks",
            "elements",
            "bytes_per_element",
            "us_per_launch",
            "us_per_launch_min",
            "us_per_launch_max",
            "host_us_per_launch",
            "launch_bound",
            "gelem_per_s",
            "fed_gbytes_per_s",
            "copy_gbytes_per_s",
            "waves",
        ] {
            assert!(!v["rows"][0][key].is_null(), "missing rows[0].{key}");
        }
        assert_eq!(v["mode"], "resident");
    }
}
