use super::*;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ4_NL,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq4_nl.md"),
    golden: ["all-types.gguf:IQ4_NL.weights", "all-types.gguf:IQ4_NL.bytes"],
}

/// ggml's `kvalues_iq4nl`, written out here to pin the generated table down.
const GGML_VALUES: [f32; 16] = [
    -127., -104., -83., -65., -49., -35., -22., -10., 1., 13., 25., 38., 53., 69., 89., 113.,
];

fn block(d: u16, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(&qs);
    b
}

/// Both paths (and the baseline build), asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ4_NL, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn low_nibbles_first_then_high_nibbles_through_the_table() {
    // qs[j] = j (low) | (15 - j) (high), d = 1.0
    let qs: [u8; 16] = std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4));
    let y = both(&block(0x3C00, qs));
    for j in 0..16 {
        assert_eq!(y[j], GGML_VALUES[j], "element {j}");
        assert_eq!(y[j + 16], GGML_VALUES[15 - j], "element {}", j + 16);
    }
}

#[test]
fn scale_multiplies_the_table_value() {
    // d = -0.5 (0xB800): every element is -0.5 * value, exactly.
    let qs: [u8; 16] = std::array::from_fn(|j| (j as u8) << 4 | (j as u8 ^ 0x5));
    let y = both(&block(0xB800, qs));
    for j in 0..16 {
        assert_eq!(y[j], -0.5 * GGML_VALUES[j ^ 5]);
        assert_eq!(y[j + 16], -0.5 * GGML_VALUES[j]);
    }
    // d = 2^-24 (smallest f16 subnormal): -127 * 2^-24 is exact.
    let y = both(&block(0x0001, [0x00; 16]));
    assert!(y.iter().all(|&v| v == -127.0 * 2f32.powi(-24)));
}

#[test]
fn zero_scale_keeps_signs() {
    // d = -0.0: positive values (indices 8..16) give -0.0, negative ones +0.0.
    let y = both(&block(0x8000, [0x08; 16])); // low: index 8 (1), high: index 0 (-127)
    assert!(bits(&y[..16]).iter().all(|&b| b == 0x8000_0000));
    assert!(bits(&y[16..]).iter().all(|&b| b == 0));
    let y = both(&block(0x0000, [0x08; 16]));
    assert!(bits(&y[..16]).iter().all(|&b| b == 0));
    assert!(bits(&y[16..]).iter().all(|&b| b == 0x8000_0000));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn inf_and_nan_scales_as_on_x86() {
    // d = +inf: every table value is non-zero, so every element is +-inf.
    let y = both(&block(0x7C00, [0x0F; 16])); // low: index 15 (113), high: index 0 (-127)
    assert!(y[..16].iter().all(|&v| v == f32::INFINITY));
    assert!(y[16..].iter().all(|&v| v == f32::NEG_INFINITY));
    // A signalling f16 NaN is quieted with its payload kept, and carried by every product.
    let y = both(&block(0x7C01, [0x5A; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x7FC0_2000), "{y:?}");
}
