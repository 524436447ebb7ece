use super::*;
use quant_core::QuantFormat;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: MXFP4,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/mxfp4.md"),
    golden: ["all-types.gguf:MXFP4.weights", "all-types.gguf:MXFP4.bytes"],
}

/// ggml's `kvalues_mxfp4`, written out here to pin the generated table down.
const GGML_VALUES: [i32; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

fn block(e: u8, qs: [u8; 16]) -> Vec<u8> {
    let mut b = vec![e];
    b.extend_from_slice(&qs);
    b
}

/// Both paths (and the baseline build), asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&MXFP4, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// Code `j` in the low nibble of `qs[j]`, code `15 - j` in its high nibble.
fn every_code() -> [u8; 16] {
    std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4))
}

#[test]
fn the_table_is_ggmls_and_the_fast_formula_matches_it() {
    for code in 0..16 {
        assert_eq!(KVALUES_MXFP4[code] as i32, GGML_VALUES[code]);
        assert_eq!(e2m1_doubled(code as i32), GGML_VALUES[code], "code {code}");
    }
}

#[test]
fn every_scale_byte_and_every_code() {
    // Block b has e = b. Expected: value * 2^(b - 128) in f64 (exact), rounded to f32 (exact
    // too, or infinite where it overflows).
    let src: Vec<u8> = (0..=255u8).flat_map(|e| block(e, every_code())).collect();
    let y = both(&src);
    for e in 0..256usize {
        let scale = 2f64.powi(e as i32 - 128);
        for j in 0..16 {
            for (k, code) in [(j, j), (j + 16, 15 - j)] {
                let want = (GGML_VALUES[code] as f64 * scale) as f32;
                assert_eq!(
                    y[32 * e + k].to_bits(),
                    want.to_bits(),
                    "e = {e:#04x}, element {k} (code {code})"
                );
            }
        }
    }
}

#[test]
fn scale_bits_as_ggml_builds_them() {
    // e = 0, 1: subnormals 2^-128, 2^-127; e = 127: 0.5; e = 0xFF: 2^127, not NaN.
    for (e, want) in [
        (0u8, 0x0020_0000u32),
        (1, 0x0040_0000),
        (2, 0x0080_0000),
        (127, 0x3F00_0000),
        (128, 0x3F80_0000),
        (0xFE, 0x7E80_0000),
        (0xFF, 0x7F00_0000),
    ] {
        assert_eq!(e8m0_to_fp32_half(e).to_bits(), want, "e = {e:#04x}");
        // Code 1 (value 1) shows the scale itself.
        let y = both(&block(e, [0x01; 16]));
        assert_eq!(y[0].to_bits(), want);
    }
    // 2 * 2^127 overflows to +inf, -12 * 2^127 to -inf.
    let y = both(&block(0xFF, [0xF2; 16]));
    assert_eq!(y[0], f32::INFINITY);
    assert_eq!(y[16], f32::NEG_INFINITY);
}

#[test]
fn codes_0_and_8_give_positive_zero() {
    for e in [0u8, 1, 100, 127, 200, 255] {
        let y = both(&block(e, [0x80; 16]));
        assert!(bits(&y).iter().all(|&b| b == 0), "e = {e}");
    }
}

#[test]
fn made_finite_scales_lie_in_2_pow_minus_10_to_1() {
    for e in 0..=255u8 {
        let mut b = block(e, [0x77; 16]); // code 7 (12) everywhere
        MXFP4.make_scales_finite(&mut b);
        assert!(FINITE_EXPONENTS.contains(&b[0]), "{e} -> {}", b[0]);
        assert_eq!(&b[1..], &[0x77; 16], "codes untouched");
        let d = e8m0_to_fp32_half(b[0]);
        assert!((2f32.powi(-10)..=1.0).contains(&d));
    }
    // Every exponent of the range is reached.
    let reached: std::collections::BTreeSet<u8> = (0..=255u8).map(finite_exponent).collect();
    assert_eq!(reached, FINITE_EXPONENTS.collect());
    // A partial trailing block is left alone.
    let mut tail = vec![0xFFu8; BLOCK_BYTES + 5];
    MXFP4.make_scales_finite(&mut tail);
    assert_eq!(tail[BLOCK_BYTES], 0xFF);
}
