use super::*;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q4_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q4_0.md"),
    golden: ["all-types.gguf:Q4_0.weights", "all-types.gguf:Q4_0.bytes", "tiny-llama-q4_0.gguf:"],
}

/// Reference and fast outputs (as bits) of whole blocks; the baseline build must agree with the
/// dispatched one.
fn run(src: &[u8]) -> (Vec<u32>, Vec<u32>) {
    quant_core::conformance::paths(&Q4_0, Some(fast_baseline), src)
}

fn block(d: u16, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(&qs);
    b
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = run(src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn nibble_order_low_half_then_high_half() {
    // qs[j] = j (low) | (15 - j) (high), d = 1.0
    let qs: [u8; 16] = std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4));
    let y = both(&block(0x3C00, qs));
    let want: [f32; 32] = [
        -8., -7., -6., -5., -4., -3., -2., -1., 0., 1., 2., 3., 4., 5., 6., 7., //
        7., 6., 5., 4., 3., 2., 1., 0., -1., -2., -3., -4., -5., -6., -7., -8.,
    ];
    assert_eq!(bits(&y), bits(&want));
}

#[test]
fn scale_is_applied_after_centring() {
    // d = 0.5 (0x3800), qs[0] = 0xF0 -> y[0] = (0-8)*0.5 = -4, y[16] = (15-8)*0.5 = 3.5
    let mut qs = [0x88u8; 16];
    qs[0] = 0xF0;
    let y = both(&block(0x3800, qs));
    assert_eq!(y[0], -4.0);
    assert_eq!(y[16], 3.5);
    assert!(y
        .iter()
        .enumerate()
        .all(|(i, v)| i == 0 || i == 16 || *v == 0.0));
}

#[test]
fn sign_of_zero_follows_ggml_order() {
    // q = 8 -> x = 0 -> (float)0 * d: -0.0 for negative d, +0.0 for positive d.
    let y = both(&block(0xBC00, [0x88; 16])); // d = -1.0
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000), "{y:?}");
    let y = both(&block(0x3C00, [0x88; 16])); // d = +1.0
    assert!(bits(&y).iter().all(|&b| b == 0x0000_0000));
    // d = -0.0: x = -8 gives +0.0, x = +7 gives -0.0.
    let y = both(&block(0x8000, [0xF0; 16]));
    assert_eq!(y[0].to_bits(), 0x0000_0000);
    assert_eq!(y[16].to_bits(), 0x8000_0000);
}

#[test]
fn subnormal_scale() {
    // d = 2^-24 (smallest f16 subnormal); x = -8 gives -2^-21 = 0xB5000000.
    let y = both(&block(0x0001, [0x00; 16]));
    assert_eq!(y[0].to_bits(), 0xB500_0000);
    assert_eq!(y[16].to_bits(), 0xB500_0000);
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn inf_and_nan_scales_as_on_x86() {
    // d = +inf: x = 0 gives inf * 0 = x86's default NaN (0xFFC00000), x = 1 gives +inf.
    let mut qs = [0x88u8; 16];
    qs[1] = 0x09;
    let y = both(&block(0x7C00, qs));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1].to_bits(), 0x7F80_0000);
    assert_eq!(y[17].to_bits(), 0xFF80_0000); // x = -8 -> -inf
                                              // d = signalling NaN 0x7C01: quieted to 0x7FC02000, and the product carries that payload.
    let y = both(&block(0x7C01, [0x5A; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x7FC0_2000), "{y:?}");
}
