//! Every registered format's kernels on a GPU against its CPU reference, written once for all
//! formats (the registry lists them; nothing here names a format):
//!
//! * at least 10^7 random blocks per format, in chunks, every output type, every element,
//!   with special f16 scales (NaN with payloads, Inf, subnormals, signed zeros, extremes) forced
//!   into about one block in eight ([`QuantFormat::f16_scale_offsets`]);
//! * one block, a few primes around and past one group, each output poisoned first;
//! * one tensor of more than 2^31 elements per format.
//!
//! f32 output must have the CPU's bits (a NaN wherever the CPU has one); f16 and bf16 output
//! must equal the CPU's f32 rounded to nearest-even. Runs with `QUANTFORGE_GPU_TESTS=1` (then a
//! missing GPU fails loudly; `QUANTFORGE_GPU_KIND=hip` picks HIP); otherwise each test prints a
//! visible SKIPPED line. Run with `--test-threads=1`: the tests allocate gigabytes.

use quantforge::core::conformance::SPECIAL_F16;
use quantforge::core::cpu::{self, CpuPath};
use quantforge::core::{random_bytes, registry, OutputDType, QuantFormat};
use quantforge::gpu::Backend;
use quantforge_tests::test_gpu;
use rayon::prelude::*;

/// Byte written over every output before a launch: as f32 (0x7B7B7B7B), f16 and bf16 (0x7B7B)
/// it is a finite number, so an element left unwritten never passes for a NaN.
const POISON: u8 = 0x7B;

/// Every registered format with GPU kernels, in type-id order; `QUANTFORGE_GPU_FORMATS=Q5_K,IQ4_XS`
/// narrows the run to those formats (said on stderr, so that a partial run is never mistaken
/// for a full one).
fn kernel_formats() -> Vec<&'static dyn QuantFormat> {
    let all: Vec<_> = registry().iter().filter(|f| f.kernel().is_some()).collect();
    assert!(all.len() >= 25, "only {} formats with kernels", all.len());
    match std::env::var("QUANTFORGE_GPU_FORMATS") {
        Ok(list) => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            let v: Vec<_> = all
                .into_iter()
                .filter(|f| names.iter().any(|n| n.eq_ignore_ascii_case(f.name())))
                .collect();
            assert_eq!(
                v.len(),
                names.len(),
                "QUANTFORGE_GPU_FORMATS={list}: unknown names"
            );
            eprintln!("ONLY these formats (QUANTFORGE_GPU_FORMATS): {list}");
            v
        }
        Err(_) => all,
    }
}

/// Random blocks; about one block in eight gets a special value in each f16 scale field.
fn random_blocks(f: &dyn QuantFormat, n_blocks: usize, seed: u64) -> Vec<u8> {
    let bb = f.geometry().block_bytes;
    let mut src = random_bytes(n_blocks * bb, seed);
    let offsets = f.f16_scale_offsets();
    let picks = random_bytes(n_blocks * offsets.len().max(1), seed ^ 0xABCD);
    for (i, block) in src.chunks_exact_mut(bb).enumerate() {
        for (k, &off) in offsets.iter().enumerate() {
            let p = picks[i * offsets.len() + k];
            if p % 8 == 0 {
                let h = SPECIAL_F16[(p as usize / 8) % SPECIAL_F16.len()];
                block[off..off + 2].copy_from_slice(&h.to_le_bytes());
            }
        }
    }
    src
}

fn is_nan_bits(dtype: OutputDType, bits: u32) -> bool {
    match dtype {
        OutputDType::F32 => f32::from_bits(bits).is_nan(),
        OutputDType::F16 => bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0,
        OutputDType::Bf16 => bits & 0x7F80 == 0x7F80 && bits & 0x007F != 0,
    }
}

/// Elements of `got` that differ from `expected` (equal bits, or NaN on both sides), describing
/// the first few on stderr.
fn mismatches(dtype: OutputDType, expected: &[u8], got: &[u8], what: &str) -> usize {
    assert_eq!(expected.len(), got.len(), "{what}: lengths");
    let size = dtype.size();
    let read = |b: &[u8]| -> u32 {
        if size == 4 {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from(u16::from_le_bytes([b[0], b[1]]))
        }
    };
    const CHUNK: usize = 1 << 16;
    let bad: Vec<(usize, usize, u32, u32)> = expected
        .par_chunks(CHUNK * size)
        .zip(got.par_chunks(CHUNK * size))
        .enumerate()
        .filter_map(|(c, (e, g))| {
            let mut count = 0;
            let mut first = None;
            for (i, (eb, gb)) in e.chunks_exact(size).zip(g.chunks_exact(size)).enumerate() {
                let (x, y) = (read(eb), read(gb));
                if x != y && !(is_nan_bits(dtype, x) && is_nan_bits(dtype, y)) {
                    count += 1;
                    first.get_or_insert((c * CHUNK + i, x, y));
                }
            }
            first.map(|(i, x, y)| (count, i, x, y))
        })
        .collect();
    for &(_, i, x, y) in bad.iter().take(5) {
        eprintln!("{what}: element {i}: expected {x:#x}, device wrote {y:#x}");
    }
    bad.iter().map(|b| b.0).sum()
}

/// Runs `f`'s kernel on `src` for each output type into a poisoned buffer and counts the
/// elements that differ from the CPU's `cpu_f32`.
fn run_all_dtypes(
    be: &dyn Backend,
    f: &dyn QuantFormat,
    src: &[u8],
    cpu_f32: &[f32],
    what: &str,
) -> usize {
    let n_blocks = src.len() / f.geometry().block_bytes;
    let kernel = f.kernel().expect("format has a kernel");
    let mut dsrc = be.alloc(src.len()).unwrap();
    be.upload(src, &mut dsrc).unwrap();
    let mut bad = 0;
    for dtype in OutputDType::ALL {
        let expected = cpu::encode_as(cpu_f32, dtype);
        let mut ddst = be.alloc(expected.len()).unwrap();
        be.fill(&mut ddst, POISON).unwrap();
        be.dequantize(kernel, &dsrc, n_blocks as u64, &mut ddst, dtype)
            .unwrap_or_else(|e| panic!("{what} {dtype}: {e}"));
        let mut got = vec![0u8; expected.len()];
        be.download(&ddst, &mut got).unwrap();
        bad += mismatches(dtype, &expected, &got, &format!("{what} {dtype}"));
    }
    bad
}

fn cpu_f32(f: &dyn QuantFormat, src: &[u8], path: CpuPath) -> Vec<f32> {
    cpu::dequantize_to_vec(f, src, path).unwrap()
}

/// Runs `check` for every format, then fails naming every format that had mismatches.
fn for_every_format(check: impl Fn(&dyn QuantFormat) -> usize) {
    let failed: Vec<String> = kernel_formats()
        .into_iter()
        .filter_map(|f| {
            let t = std::time::Instant::now();
            let bad = check(f);
            eprintln!(
                "{}: {bad} mismatching elements ({:.1} s)",
                f.name(),
                t.elapsed().as_secs_f64()
            );
            (bad > 0).then(|| format!("{}: {bad}", f.name()))
        })
        .collect();
    assert!(failed.is_empty(), "formats with mismatches: {failed:?}");
}

#[test]
fn ten_million_random_blocks_per_format_match_the_cpu() {
    let Some(be) = test_gpu("ten_million_random_blocks_per_format_match_the_cpu") else {
        return;
    };
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 10; // 10 * 2^20 > 10^7
    for_every_format(|f| {
        (0..CHUNKS)
            .map(|c| {
                let src = random_blocks(
                    f,
                    CHUNK,
                    0x1000 + c as u64 + 97 * u64::from(f.ggml_type().0),
                );
                // The first chunk against the reference itself, the rest against the fast path
                // (which the format's own suite holds to the reference bit for bit).
                let path = if c == 0 {
                    CpuPath::Reference
                } else {
                    CpuPath::Fast
                };
                let want = cpu_f32(f, &src, path);
                run_all_dtypes(
                    be.as_ref(),
                    f,
                    &src,
                    &want,
                    &format!("{} chunk {c}", f.name()),
                )
            })
            .sum()
    });
}

#[test]
fn one_block_and_prime_block_counts_match_the_cpu() {
    let Some(be) = test_gpu("one_block_and_prime_block_counts_match_the_cpu") else {
        return;
    };
    for_every_format(|f| {
        [1usize, 3, 17, 127, 131, 65_537]
            .into_iter()
            .enumerate()
            .map(|(k, n)| {
                let src = random_blocks(f, n, 0x2000 + k as u64);
                let want = cpu_f32(f, &src, CpuPath::Reference);
                run_all_dtypes(
                    be.as_ref(),
                    f,
                    &src,
                    &want,
                    &format!("{} {n} blocks", f.name()),
                )
            })
            .sum()
    });
}

#[test]
fn a_tensor_of_more_than_2_31_elements_per_format_matches_the_cpu() {
    let Some(be) = test_gpu("a_tensor_of_more_than_2_31_elements_per_format_matches_the_cpu")
    else {
        return;
    };
    let formats = kernel_formats();
    for_every_format(|f| {
        // The output types take turns over the formats; f16 and bf16 halve the memory.
        let i = formats
            .iter()
            .position(|g| g.ggml_type() == f.ggml_type())
            .unwrap();
        let dtype = [OutputDType::F16, OutputDType::Bf16, OutputDType::F32][i % 3];
        huge_tensor(be.as_ref(), f, dtype)
    });
}

/// One tensor of 2^31 + (a block or two) elements, downloaded whole and checked chunk by chunk.
fn huge_tensor(be: &dyn Backend, f: &dyn QuantFormat, dtype: OutputDType) -> usize {
    let g = f.geometry();
    let n_blocks = (1usize << 31) / g.block_elems + 3;
    let elems = n_blocks * g.block_elems;
    assert!(elems > 1usize << 31);
    let out_bytes = elems * dtype.size();
    let need = (n_blocks * g.block_bytes + out_bytes) as u64;
    let mem = be.mem_info().unwrap();
    assert!(
        mem.free > need + (1 << 30),
        "{}->{dtype}: needs {need} bytes of device memory, {} free",
        f.name(),
        mem.free
    );
    let src = random_blocks(f, n_blocks, 0x3000 + u64::from(f.ggml_type().0));
    let mut dsrc = be.alloc(src.len()).unwrap();
    be.upload(&src, &mut dsrc).unwrap();
    let mut ddst = be.alloc(out_bytes).unwrap();
    be.fill(&mut ddst, POISON).unwrap();
    be.dequantize(
        f.kernel().unwrap(),
        &dsrc,
        n_blocks as u64,
        &mut ddst,
        dtype,
    )
    .unwrap();
    drop(dsrc);
    let mut got = vec![0u8; out_bytes];
    be.download(&ddst, &mut got).unwrap();
    drop(ddst);
    let chunk_blocks = (1usize << 26) / g.block_elems;
    src.chunks(chunk_blocks * g.block_bytes)
        .enumerate()
        .map(|(c, blocks)| {
            let expected = cpu::encode_as(&cpu_f32(f, blocks, CpuPath::Fast), dtype);
            let at = c * chunk_blocks * g.block_elems * dtype.size();
            mismatches(
                dtype,
                &expected,
                &got[at..at + expected.len()],
                &format!("{}->{dtype} huge, chunk {c}", f.name()),
            )
        })
        .sum()
}
