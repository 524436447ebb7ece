//! Times every format kernel for every output type against a device-to-device copy, on CUDA
//! device 0 (or `--device N`), and prints a Markdown table.
//!
//! ```text
//! cargo run -p quant-cuda --release --example kernel_bench -- [--iters 50] [--mib 768]
//! ```

use quant_core::{GgmlType, OutputDType};
use quant_cuda::CudaBackend;
use quant_gpu::bench::{bench_copy, bench_dequant, BenchConfig, BenchResult};
use quant_gpu::Backend;

use quant_q4_0 as _;
use quant_q4k as _;
use quant_q6k as _;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let cfg = BenchConfig {
        bytes_per_launch: arg(&args, "--mib", 768) << 20,
        iters: arg(&args, "--iters", 50),
        ..BenchConfig::default()
    };
    let be = CudaBackend::new(arg(&args, "--device", 0))?;
    println!(
        "device: {}  ({} SMs, warp {})",
        be.info(),
        be.info().multiprocessors,
        be.info().warp_size
    );
    println!("nvrtc: {:?}", CudaBackend::nvrtc_version());
    println!(
        "config: {} MiB read+written per launch, {} input sets, {} warm-up, median of {}",
        cfg.bytes_per_launch >> 20,
        cfg.input_sets,
        cfg.warmup,
        cfg.iters
    );
    let copy_before = bench_copy(&be, &cfg)?;
    let mut rows: Vec<BenchResult> = Vec::new();
    for ty in [GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K] {
        let Some(f) = quant_core::lookup(ty) else {
            println!("{ty}: not registered in this build, skipped");
            continue;
        };
        for dtype in OutputDType::ALL {
            rows.push(bench_dequant(&be, f, dtype, &cfg)?);
        }
    }
    let copy_after = bench_copy(&be, &cfg)?;
    let copy = copy_before.gbps().max(copy_after.gbps());
    println!();
    println!("| what | MB moved | median ms | min ms | max ms | GB/s | % of copy |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in std::iter::once(&copy_before)
        .chain(rows.iter())
        .chain(std::iter::once(&copy_after))
    {
        println!(
            "| {} | {:.1} | {:.4} | {:.4} | {:.4} | {:.0} | {:.1}% |",
            r.label,
            r.bytes_moved as f64 / 1e6,
            r.median_ms,
            r.min_ms,
            r.max_ms,
            r.gbps(),
            100.0 * r.gbps() / copy
        );
    }
    let worst = rows
        .iter()
        .map(|r| 100.0 * r.gbps() / copy)
        .fold(f64::INFINITY, f64::min);
    println!();
    println!(
        "copy baseline {copy:.0} GB/s (best of before/after); worst kernel {worst:.1}% of copy"
    );
    Ok(())
}
