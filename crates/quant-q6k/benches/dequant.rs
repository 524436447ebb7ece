//! Q6_K -> f32 throughput: reference, single-threaded fast path, and the fast path spread over
//! all cores by `quant_core::cpu::dequantize`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quant_core::cpu::{dequantize, CpuPath};
use quant_core::QuantFormat;
use quant_q6k::{BLOCK_BYTES, BLOCK_ELEMS, Q6_K};

/// Pseudo-random blocks with finite, moderate scales (as real weights have).
fn blocks(n: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut src: Vec<u8> = (0..n * BLOCK_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    for b in src.chunks_exact_mut(BLOCK_BYTES) {
        b[209] = 0x20 | (b[209] & 0x0F); // d: f16 exponent well inside the finite range
    }
    src
}

fn bench(c: &mut Criterion) {
    // 4 Mi elements: 3.28 MiB in, 16 MiB out.
    let n_blocks = (4 << 20) / BLOCK_ELEMS;
    let src = blocks(n_blocks);
    let mut dst = vec![0f32; n_blocks * BLOCK_ELEMS];
    let mut g = c.benchmark_group("q6_k");
    g.throughput(Throughput::Elements(dst.len() as u64));
    g.bench_function("reference", |b| {
        b.iter(|| Q6_K.dequantize_reference(black_box(&src), black_box(&mut dst)))
    });
    g.bench_function("fast_1thread", |b| {
        b.iter(|| Q6_K.dequantize_fast(black_box(&src), black_box(&mut dst)))
    });
    g.bench_function("fast_all_cores", |b| {
        b.iter(|| dequantize(&Q6_K, black_box(&src), black_box(&mut dst), CpuPath::Fast).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
