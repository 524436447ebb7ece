use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q4_1,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q4_1.md"),
    golden: ["all-types.gguf:Q4_1.weights", "all-types.gguf:Q4_1.bytes"],
}

/// One block from its raw fields.
fn block(d: u16, m: u16, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(m.to_le_bytes());
    b.extend(qs);
    b
}

fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q4_1, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn low_nibbles_are_the_first_half_high_nibbles_the_second() {
    // qs[j] = (15 - j) << 4 | j: element j is j, element j + 16 is 15 - j.
    let qs: [u8; 16] = std::array::from_fn(|j| ((15 - j as u8) << 4) | j as u8);
    let y = both(&block(0x3C00, 0x0000, qs)); // d = 1, m = 0
    for j in 0..16 {
        assert_eq!(y[j], j as f32, "element {j}");
        assert_eq!(y[j + 16], (15 - j) as f32, "element {}", j + 16);
    }
    // d = 0.5, m = -2: q * 0.5 - 2.
    let y = both(&block(0x3800, 0xC000, qs));
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.5 - 2.0, "element {j}");
        assert_eq!(y[j + 16], (15 - j) as f32 * 0.5 - 2.0);
    }
}

#[test]
fn a_second_block_follows_without_padding() {
    let mut src = block(0x3C00, 0x3C00, [0x00; 16]); // all 1
    src.extend(block(0x4000, 0x0000, [0xFF; 16])); // all 15 * 2
    let y = both(&src);
    assert!(y[..32].iter().all(|&v| v == 1.0));
    assert!(y[32..].iter().all(|&v| v == 30.0));
}

#[test]
fn zero_quant_sign_of_zero_comes_from_the_add() {
    // q = 0, d = -1: 0 * -1 = -0; -0 + +0 = +0, -0 + -0 = -0.
    let y = both(&block(0xBC00, 0x0000, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x0000_0000));
    let y = both(&block(0xBC00, 0x8000, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    // q = 0, d = +1, m = -0: +0 + -0 = +0.
    let y = both(&block(0x3C00, 0x8000, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x0000_0000));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_as_on_x86() {
    // d = +Inf: 0 * Inf is x86's default NaN, whatever m; 1 * Inf + -Inf too.
    let mut qs = [0u8; 16];
    qs[1] = 0x01;
    let y = both(&block(0x7C00, 0x3C00, qs));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1], f32::INFINITY);
    let y = both(&block(0x7C00, 0xFC00, qs));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1].to_bits(), 0xFFC0_0000);
    // A signalling NaN m is quieted with its payload kept, and survives the add.
    let y = both(&block(0x3C00, 0x7C01, qs));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // NaN d and NaN m: the product (the add's first operand) gives the payload.
    let y = both(&block(0xFD55, 0x7C01, qs));
    assert!(
        bits(&y).iter().all(|&b| b == 0xFFEA_A000),
        "{:#x}",
        y[0].to_bits()
    );
}
