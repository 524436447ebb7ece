//! Host-to-device copy bandwidth on CUDA device 0 (or `--device N`), timed with device events:
//! from page-locked memory ([`Backend::alloc_host`] + [`Backend::upload_async`]) and from
//! ordinary memory ([`Backend::upload_pageable`]). The pinned figure is the limit a loader can
//! reach: quantized bytes over it is the fastest a model can arrive.
//!
//! ```text
//! cargo run -p quant-cuda --release --example h2d_bench -- [--mib 512] [--iters 10]
//! ```

use quant_cuda::CudaBackend;
use quant_gpu::{Backend, Queue};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut ms: Vec<f32>) -> f64 {
    ms.sort_by(f32::total_cmp);
    ms[ms.len() / 2] as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bytes = arg(&args, "--mib", 512) << 20;
    let iters = arg(&args, "--iters", 10).max(1);
    let be = CudaBackend::new(arg(&args, "--device", 0))?;
    println!("device: {}", be.info());
    let mut dev = be.alloc(bytes)?;

    let mut pinned = be.alloc_host(bytes)?;
    pinned
        .as_mut_slice()?
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    be.upload_async(Queue::Compute, &mut pinned, 0..bytes, &mut dev, 0)?;
    be.synchronize()?;
    let ms = be.time_events(iters, &mut || {
        be.upload_async(Queue::Compute, &mut pinned, 0..bytes, &mut dev, 0)
    })?;
    let pinned_ms = median(ms);

    // The same bytes as back-to-back copies of one ring slot's size, as a pipelined load
    // issues them.
    let mut chunked = Vec::new();
    for chunk_mib in [1usize, 2, 4, 8, 32] {
        let chunk = (chunk_mib << 20).min(bytes);
        let ms = be.time_events(iters, &mut || {
            for start in (0..bytes).step_by(chunk) {
                let end = (start + chunk).min(bytes);
                be.upload_async(Queue::Compute, &mut pinned, start..end, &mut dev, start)?;
            }
            Ok(())
        })?;
        chunked.push((chunk_mib, median(ms)));
    }

    let pageable: Vec<u8> = (0..bytes).map(|i| (i * 7) as u8).collect();
    be.upload_pageable(&pageable, &mut dev)?;
    let ms = be.time_events(iters, &mut || be.upload_pageable(&pageable, &mut dev))?;
    let pageable_ms = median(ms);

    let gbs = |ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
    println!(
        "h2d pinned:   {} MiB in {pinned_ms:.3} ms = {:.2} GB/s (median of {iters})",
        bytes >> 20,
        gbs(pinned_ms)
    );
    for (chunk_mib, ms) in chunked {
        println!(
            "h2d pinned in {chunk_mib} MiB copies: {} MiB in {ms:.3} ms = {:.2} GB/s (median of {iters})",
            bytes >> 20,
            gbs(ms)
        );
    }
    println!(
        "h2d pageable: {} MiB in {pageable_ms:.3} ms = {:.2} GB/s (median of {iters})",
        bytes >> 20,
        gbs(pageable_ms)
    );
    println!("H2D_PINNED_GBPS={:.3}", gbs(pinned_ms));
    Ok(())
}
