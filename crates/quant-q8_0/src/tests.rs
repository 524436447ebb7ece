use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q8_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q8_0.md"),
    golden: ["all-types.gguf:Q8_0.weights", "all-types.gguf:Q8_0.bytes", "tiny-llama-q8_0.gguf:"],
}

fn block(d: u16, qs: [i8; 32]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(qs.iter().map(|&q| q as u8));
    b
}

fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q8_0, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn quants_are_signed_bytes_in_element_order() {
    let qs: [i8; 32] = std::array::from_fn(|j| (j as i32 * 9 - 128) as i8);
    let y = both(&block(0x3800, qs)); // d = 0.5
    for j in 0..32 {
        assert_eq!(y[j], qs[j] as f32 * 0.5, "element {j}");
    }
    let y = both(&block(0x3C00, [-128; 32]));
    assert!(y.iter().all(|&v| v == -128.0));
}

#[test]
fn zero_quant_keeps_the_sign_of_d() {
    let y = both(&block(0xBC00, [0; 32])); // d = -1
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    let y = both(&block(0x3C00, [0; 32]));
    assert!(bits(&y).iter().all(|&b| b == 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // A signalling f16 NaN is quieted with its payload kept; times 0 it stays that NaN.
    let y = both(&block(0x7C01, [0; 32]));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // inf * 0 is x86's default NaN (negative, quiet); inf * -1 = -inf.
    let mut qs = [0i8; 32];
    qs[1] = -1;
    let y = both(&block(0x7C00, qs));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1], f32::NEG_INFINITY);
}
