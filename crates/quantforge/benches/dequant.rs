//! CPU dequantization throughput of every registered format (criterion): ggml's scalar loop
//! (the reference, one thread), the fast path on one thread, and the fast path on every core
//! through `quant_core::cpu::dequantize`, at a cache-resident and a DRAM-sized output, beside
//! the machine's ceiling for writing that much f32 (a parallel fill).
//!
//! ```text
//! cargo bench -p quantforge --bench dequant [-- FILTER]
//! ```
//! `quantforge bench` gives the same figures in one table or as JSON.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quantforge::core::cpu::{dequantize, CpuPath};
use quantforge::core::{random_bytes, registry};
use rayon::prelude::*;

fn bench(c: &mut Criterion) {
    // 1 Mi elements (4 MiB of f32 out: cache-resident) and 16 Mi (64 MiB out: DRAM).
    for (label, elems) in [("1Mi", 1usize << 20), ("16Mi", 1 << 24)] {
        for format in registry().iter() {
            let g = format.geometry();
            let n_blocks = elems / g.block_elems;
            let src = random_bytes(
                n_blocks * g.block_bytes,
                0x9e37 + format.ggml_type().0 as u64,
            );
            let mut dst = vec![0f32; n_blocks * g.block_elems];
            let mut group = c.benchmark_group(format!("{}/{label}", format.name().to_lowercase()));
            group.throughput(Throughput::Elements(dst.len() as u64));
            group.bench_function("reference_1thread", |b| {
                b.iter(|| format.dequantize_reference(black_box(&src), black_box(&mut dst)))
            });
            group.bench_function("fast_1thread", |b| {
                b.iter(|| format.dequantize_fast(black_box(&src), black_box(&mut dst)))
            });
            group.bench_function("fast_all_cores", |b| {
                b.iter(|| {
                    dequantize(format, black_box(&src), black_box(&mut dst), CpuPath::Fast).unwrap()
                })
            });
            group.bench_function("ceiling_fill_all_cores", |b| {
                b.iter(|| {
                    black_box(&mut dst)
                        .par_chunks_mut(1 << 16)
                        .for_each(|c| c.fill(1.0))
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
