use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q1_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q1_0.md"),
    golden: ["new-types.gguf:Q1_0.weights", "new-types.gguf:Q1_0.bytes"],
}

/// A block from its fields.
fn block(d: u16, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(&qs);
    b
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q1_0, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn bits_are_least_significant_first_in_element_order() {
    let qs: [u8; 16] = std::array::from_fn(|b| (b as u8).wrapping_mul(29) ^ 0xA5);
    let y = both(&block(0x3800, qs)); // d = 0.5
    for j in 0..128 {
        let want = if qs[j / 8] >> (j % 8) & 1 == 1 {
            0.5
        } else {
            -0.5
        };
        assert_eq!(y[j], want, "element {j}");
    }
    // A single set bit: element 8 * 3 + 5 only.
    let mut qs = [0u8; 16];
    qs[3] = 1 << 5;
    let y = both(&block(0x3C00, qs));
    for (j, &v) in y.iter().enumerate() {
        assert_eq!(v, if j == 29 { 1.0 } else { -1.0 }, "element {j}");
    }
}

#[test]
fn zero_scale_gives_signed_zeros() {
    let mut qs = [0u8; 16];
    qs[0] = 0b0000_0001;
    let y = bits(&both(&block(0x0000, qs)));
    assert_eq!(y[0], 0);
    assert!(y[1..].iter().all(|&b| b == 0x8000_0000));
    let y = bits(&both(&block(0x8000, qs))); // d = -0.0
    assert_eq!(y[0], 0x8000_0000);
    assert!(y[1..].iter().all(|&b| b == 0));
}

#[test]
fn subnormal_scale_is_exact() {
    // d = 2^-24 (smallest f16 subnormal), exactly representable in f32.
    let y = both(&block(0x0001, [0x0F; 16]));
    assert_eq!(y[0], 2f32.powi(-24));
    assert_eq!(y[4], -(2f32.powi(-24)));
}

#[test]
fn nan_and_inf_scales() {
    // A signalling f16 NaN is quieted with its payload kept (F16C); negation flips the sign bit
    // only, so clear bits get the same NaN with the sign set.
    let mut qs = [0u8; 16];
    qs[0] = 1;
    let y = bits(&both(&block(0x7C01, qs)));
    assert_eq!(y[0], 0x7FC0_2000);
    assert!(y[1..].iter().all(|&b| b == 0xFFC0_2000), "{:#x}", y[1]);
    // A negative NaN: the set bit keeps it, the clear bits make it positive.
    let y = bits(&both(&block(0xFE05, qs)));
    assert_eq!(y[0], 0xFFC0_A000);
    assert!(y[1..].iter().all(|&b| b == 0x7FC0_A000));
    let y = both(&block(0x7C00, qs));
    assert_eq!(y[0], f32::INFINITY);
    assert!(y[1..].iter().all(|&v| v == f32::NEG_INFINITY));
}
