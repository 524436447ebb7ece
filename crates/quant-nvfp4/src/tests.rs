use super::*;
use quant_core::QuantFormat;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: NVFP4,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/nvfp4.md"),
    golden: ["new-types.gguf:NVFP4.weights", "new-types.gguf:NVFP4.bytes"],
}

/// ggml's `kvalues_mxfp4`, written out here to pin the generated table down.
const GGML_VALUES: [i32; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The scale byte `x` decoded by hand, in f64: `(8 + man) * 2^(exp - 11)`, `man * 2^-10` for
/// `exp = 0`, and 0 for the bytes 0x00 and 0x7F (bit 7 is ignored otherwise).
fn scale_by_hand(x: u8) -> f64 {
    if x == 0x00 || x == 0x7F {
        return 0.0;
    }
    let (exp, man) = ((x >> 3) & 0xF, x & 7);
    if exp == 0 {
        man as f64 / 1024.0
    } else {
        (8 + man) as f64 * 2f64.powi(exp as i32 - 11)
    }
}

fn block(d: [u8; 4], qs: [u8; 32]) -> Vec<u8> {
    let mut b = d.to_vec();
    b.extend_from_slice(&qs);
    b
}

/// Both paths (and the baseline build), asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&NVFP4, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// In every sub-block, code `j` in the low nibble of byte `j` and code `j + 8` in its high one:
/// element `16s + k` has code `k`.
fn codes_in_element_order() -> [u8; 32] {
    std::array::from_fn(|i| (i % 8) as u8 | (((i % 8) as u8 + 8) << 4))
}

#[test]
fn the_table_is_ggmls_and_the_fast_formula_matches_it() {
    for code in 0..16 {
        assert_eq!(KVALUES_MXFP4[code] as i32, GGML_VALUES[code]);
        assert_eq!(e2m1_doubled(code as i32), GGML_VALUES[code], "code {code}");
    }
}

#[test]
fn every_scale_byte_decodes_as_by_hand() {
    for x in 0..=255u8 {
        let want = scale_by_hand(x) as f32;
        assert_eq!(ue4m3_to_fp32(x).to_bits(), want.to_bits(), "{x:#04x}");
        assert_eq!(UE4M3_HALF_BITS[x as usize], want.to_bits(), "{x:#04x}");
    }
    // The bytes the issue names, and a few more by value.
    for (x, want) in [
        (0x00u8, 0.0f32),
        (0x7F, 0.0),
        (0x80, 0.0),
        (0xFF, 240.0),
        (0x01, 2f32.powi(-10)),
        (0x07, 7.0 * 2f32.powi(-10)),
        (0x08, 2f32.powi(-7)),
        (0x38, 0.5),
        (0x7E, 224.0),
        (0xFE, 224.0),
        (0xB8, 0.5),
    ] {
        assert_eq!(ue4m3_to_fp32(x).to_bits(), want.to_bits(), "{x:#04x}");
    }
}

#[test]
fn every_scale_byte_in_every_sub_block_and_every_code() {
    // 256 blocks: block b gives sub-block s the scale byte (b + 64 s) % 256, so every byte
    // occurs in every position.
    let src: Vec<u8> = (0..256usize)
        .flat_map(|b| {
            block(
                std::array::from_fn(|s| ((b + 64 * s) % 256) as u8),
                codes_in_element_order(),
            )
        })
        .collect();
    let y = both(&src);
    for b in 0..256usize {
        for s in 0..4 {
            let x = ((b + 64 * s) % 256) as u8;
            for k in 0..16 {
                // value * scale is exact in f64 and in f32; 0 * scale is +0, -v * 0 is -0.
                let want = (GGML_VALUES[k] as f64 * scale_by_hand(x)) as f32;
                assert_eq!(
                    y[64 * b + 16 * s + k].to_bits(),
                    want.to_bits(),
                    "scale byte {x:#04x} in sub-block {s}, code {k}"
                );
            }
        }
    }
}

#[test]
fn sub_blocks_use_their_own_scale_and_bytes() {
    // Scales 0.5, 1, 2, 4 (0x38, 0x40, 0x48, 0x50); sub-block s's bytes all hold code s + 1
    // (low) and code 9 + s (high).
    let qs: [u8; 32] = std::array::from_fn(|i| {
        let s = (i / 8) as u8;
        (s + 1) | ((9 + s) << 4)
    });
    let y = both(&block([0x38, 0x40, 0x48, 0x50], qs));
    for s in 0..4 {
        let d = [0.5f32, 1.0, 2.0, 4.0][s];
        for j in 0..8 {
            assert_eq!(y[16 * s + j], GGML_VALUES[s + 1] as f32 * d);
            assert_eq!(y[16 * s + j + 8], GGML_VALUES[9 + s] as f32 * d);
        }
    }
}

#[test]
fn zero_scale_signs() {
    // A zero scale (0x00, 0x7F, 0x80): +0.0 for codes 0..8, -0.0 for codes 9..15, +0.0 for 8.
    for x in [0x00u8, 0x7F, 0x80] {
        let y = bits(&both(&block([x; 4], codes_in_element_order())));
        for s in 0..4 {
            for k in 0..16 {
                let want = if k > 8 { 0x8000_0000 } else { 0 };
                assert_eq!(y[16 * s + k], want, "scale {x:#04x}, code {k}");
            }
        }
    }
}

#[test]
fn made_finite_scales_are_normal_and_small() {
    for x in 0..=255u8 {
        let f = finite_scale(x);
        let d = ue4m3_to_fp32(f);
        assert!(
            d.is_normal() && (2f32.powi(-7)..=0.9375).contains(&d),
            "{x:#04x} -> {f:#04x} = {d}"
        );
        assert_eq!(f & 7, x & 7, "mantissa kept");
    }
    let mut b = block([0x00, 0x7F, 0x80, 0xFF], [0x77; 32]);
    NVFP4.make_scales_finite(&mut b);
    assert!(b[..4].iter().all(|&x| ue4m3_to_fp32(x) > 0.0));
    assert_eq!(&b[4..], &[0x77; 32], "codes untouched");
    // A partial trailing block is left alone.
    let mut tail = vec![0u8; BLOCK_BYTES + 5];
    NVFP4.make_scales_finite(&mut tail);
    assert!(tail[BLOCK_BYTES..].iter().all(|&x| x == 0));
}
