// Shared check for the `dequant` fuzz target and its corpus replay test
// (`crates/quantforge/tests/fuzz_corpus.rs`). Included with `#[path]` from both. Needs
// `quant_core`, and the format crates linked into the binary (through the `quantforge` facade).

/// Formats the `dequant` target expects in the registry; the check refuses to run without them,
/// so a linking mistake cannot make the fuzzer test nothing.
pub const DEQUANT_EXPECTED: [quant_core::GgmlType; 29] = [
    quant_core::GgmlType::F32,
    quant_core::GgmlType::F16,
    quant_core::GgmlType::BF16,
    quant_core::GgmlType::F64,
    quant_core::GgmlType::Q4_0,
    quant_core::GgmlType::Q4_1,
    quant_core::GgmlType::Q5_0,
    quant_core::GgmlType::Q5_1,
    quant_core::GgmlType::Q8_0,
    quant_core::GgmlType::Q2_K,
    quant_core::GgmlType::Q3_K,
    quant_core::GgmlType::Q4_K,
    quant_core::GgmlType::Q5_K,
    quant_core::GgmlType::Q6_K,
    quant_core::GgmlType::Q1_0,
    quant_core::GgmlType::Q2_0,
    quant_core::GgmlType::IQ1_S,
    quant_core::GgmlType::IQ1_M,
    quant_core::GgmlType::IQ2_XXS,
    quant_core::GgmlType::IQ2_XS,
    quant_core::GgmlType::IQ2_S,
    quant_core::GgmlType::IQ3_XXS,
    quant_core::GgmlType::IQ3_S,
    quant_core::GgmlType::IQ4_NL,
    quant_core::GgmlType::IQ4_XS,
    quant_core::GgmlType::TQ1_0,
    quant_core::GgmlType::TQ2_0,
    quant_core::GgmlType::MXFP4,
    quant_core::GgmlType::NVFP4,
];

/// Input layout: `[format, mode, tile, extra, payload...]`.
///
/// * `format` picks a registered format (modulo their number);
/// * `mode & 3`: 0 and 1 dequantize the whole blocks of the payload (tiled `tile` times when
///   `mode & 4`, to cross the fast path's 1024-block task boundary) with both CPU paths and
///   require bit-identical results; 2 gives an output length off by `extra + 1` elements; 3
///   gives a payload cut `extra % block_bytes + 1` bytes short of whole blocks. Both of the
///   latter must fail with an error on both paths.
///
/// Panics on a broken promise.
pub fn check_dequant(data: &[u8]) {
    use quant_core::cpu::{dequantize, dequantize_to_vec, elements_in, CpuPath};

    let reg = quant_core::registry();
    reg.require(&DEQUANT_EXPECTED)
        .expect("the format crates are not linked into this binary");
    let formats: Vec<_> = reg.iter().collect();
    let Some((&[fmt_b, mode, tile, extra], payload)) = data.split_first_chunk::<4>() else {
        return;
    };
    let format = formats[fmt_b as usize % formats.len()];
    let g = format.geometry();

    let whole = payload.len() / g.block_bytes * g.block_bytes;
    let mut src: Vec<u8> = payload[..whole].to_vec();
    if mode & 4 != 0 && !src.is_empty() {
        // Enough copies to pass one fast-path task (1024 blocks), bounded for speed.
        let blocks = src.len() / g.block_bytes;
        let copies = (1025 / blocks + 1).min(1 + tile as usize % 64);
        src = src.repeat(copies);
    }
    let n = src.len() / g.block_bytes * g.block_elems;

    // The whole-input helpers must never panic, whatever the length.
    match elements_in(format, payload.len()) {
        Ok(k) => assert_eq!(k, payload.len() / g.block_bytes * g.block_elems),
        Err(_) => assert_ne!(payload.len() % g.block_bytes, 0),
    }
    let _ = dequantize_to_vec(format, payload, CpuPath::Reference);

    match mode & 3 {
        0 | 1 => {
            // Fill with a pattern that is not what dequantization writes, so an element a path
            // forgets to write shows up.
            let mut r = vec![f32::from_bits(0x7fc0_dead); n];
            let mut f = vec![f32::from_bits(0xffc0_beef); n];
            dequantize(format, &src, &mut r, CpuPath::Reference).expect("whole blocks");
            dequantize(format, &src, &mut f, CpuPath::Fast).expect("whole blocks");
            for (i, (a, b)) in r.iter().zip(&f).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{}: element {i} of {n}: reference {a:e} ({:#010x}) fast {b:e} ({:#010x})",
                    format.name(),
                    a.to_bits(),
                    b.to_bits()
                );
            }
        }
        2 => {
            let delta = usize::from(extra) + 1;
            for len in [n + delta, n.wrapping_sub(delta)] {
                if len > n + 256 + g.block_elems {
                    continue; // n < delta: no shorter output to try
                }
                let mut out = vec![0f32; len];
                for path in [CpuPath::Reference, CpuPath::Fast] {
                    let r = dequantize(format, &src, &mut out, path);
                    // Off by less than a block can never fit; off by whole blocks neither,
                    // since the source length is fixed.
                    assert!(
                        r.is_err(),
                        "{}: {len} outputs for {n} accepted",
                        format.name()
                    );
                }
            }
        }
        _ => {
            let cut = usize::from(extra) % g.block_bytes + 1;
            if src.len() >= cut {
                let short = &src[..src.len() - cut];
                let mut out = vec![0f32; n];
                for path in [CpuPath::Reference, CpuPath::Fast] {
                    let r = dequantize(format, short, &mut out, path);
                    assert!(
                        r.is_err(),
                        "{}: {} bytes for {n} outputs accepted",
                        format.name(),
                        short.len()
                    );
                }
            }
        }
    }
}
