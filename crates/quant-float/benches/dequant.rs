//! F32 / F16 / BF16 -> f32 throughput: reference, single-threaded fast path, and the fast path
//! spread over all cores by `quant_core::cpu::dequantize`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quant_core::cpu::{dequantize, CpuPath};
use quant_core::QuantFormat;
use quant_float::{BF16, F16, F32};

fn bench(c: &mut Criterion) {
    // 1 Mi elements: 4 MiB of f32 out (L3-resident).
    let elems = 1usize << 20;
    for format in [&F32 as &dyn QuantFormat, &F16, &BF16] {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let src: Vec<u8> = (0..elems * format.geometry().block_bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let mut dst = vec![0f32; elems];
        let mut g = c.benchmark_group(format!("{}/1Mi", format.name().to_lowercase()));
        g.throughput(Throughput::Elements(elems as u64));
        g.bench_function("reference", |b| {
            b.iter(|| format.dequantize_reference(black_box(&src), black_box(&mut dst)))
        });
        g.bench_function("fast_1thread", |b| {
            b.iter(|| format.dequantize_fast(black_box(&src), black_box(&mut dst)))
        });
        g.bench_function("fast_all_cores", |b| {
            b.iter(|| {
                dequantize(format, black_box(&src), black_box(&mut dst), CpuPath::Fast).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
