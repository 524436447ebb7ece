//! Q4_0 -> f32 throughput: reference, single-threaded fast path, and the fast path spread over
//! all cores by `quant_core::cpu::dequantize`, at an L3-resident and a DRAM-sized output, next
//! to the machine's ceiling for writing that much f32 (a parallel `fill`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quant_core::cpu::{dequantize, CpuPath};
use quant_core::QuantFormat;
use quant_q4_0::{BLOCK_BYTES, BLOCK_ELEMS, Q4_0};
use rayon::prelude::*;

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
        b[1] = 0x20 | (b[1] & 0x0F); // d: f16 exponent well inside the finite range
    }
    src
}

fn bench(c: &mut Criterion) {
    // 1 Mi elements (4 MiB of f32 out: L3-resident) and 16 Mi (64 MiB out: DRAM).
    for (label, elems) in [("1Mi", 1usize << 20), ("16Mi", 1 << 24)] {
        let n_blocks = elems / BLOCK_ELEMS;
        let src = blocks(n_blocks);
        let mut dst = vec![0f32; n_blocks * BLOCK_ELEMS];
        let mut g = c.benchmark_group(format!("q4_0/{label}"));
        g.throughput(Throughput::Elements(dst.len() as u64));
        g.bench_function("reference", |b| {
            b.iter(|| Q4_0.dequantize_reference(black_box(&src), black_box(&mut dst)))
        });
        g.bench_function("fast_1thread", |b| {
            b.iter(|| Q4_0.dequantize_fast(black_box(&src), black_box(&mut dst)))
        });
        g.bench_function("fast_all_cores", |b| {
            b.iter(|| {
                dequantize(&Q4_0, black_box(&src), black_box(&mut dst), CpuPath::Fast).unwrap()
            })
        });
        // The same into a 64-byte-aligned buffer (as a page-aligned staging buffer would be):
        // glibc's large allocations sit 16 bytes past a page, so half of the 32-byte stores of
        // the AVX2 path straddle a cache line.
        let mut big = vec![0f32; dst.len() + 16];
        let off = big.as_ptr().align_offset(64);
        let aligned = &mut big[off..off + dst.len()];
        g.bench_function("fast_all_cores_dst_aligned64", |b| {
            b.iter(|| {
                dequantize(
                    &Q4_0,
                    black_box(&src),
                    black_box(&mut *aligned),
                    CpuPath::Fast,
                )
                .unwrap()
            })
        });
        g.bench_function("ceiling_fill_all_cores", |b| {
            b.iter(|| {
                black_box(&mut dst)
                    .par_chunks_mut(1 << 16)
                    .for_each(|c| c.fill(1.0))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
