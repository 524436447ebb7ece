use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: TQ2_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/tq2_0.md"),
    golden: ["all-types.gguf:TQ2_0.weights", "all-types.gguf:TQ2_0.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&TQ2_0, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A block from its fields.
fn block(qs: &[u8; 64], d: u16) -> Vec<u8> {
    let mut b = qs.to_vec();
    b.extend_from_slice(&d.to_le_bytes());
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

/// Packs 256 two-bit quants (element order) into `qs`, from the layout drawing.
fn pack(q: &[u8; 256]) -> [u8; 64] {
    let mut qs = [0u8; 64];
    for (e, &v) in q.iter().enumerate() {
        let (h, l, m) = (e / 128, (e % 128) / 32, e % 32);
        qs[32 * h + m] |= (v & 3) << (2 * l);
    }
    qs
}

const ONE: u16 = 0x3C00;
const MINUS_HALF: u16 = 0xB800;

#[test]
fn quants_in_element_order() {
    let q: [u8; 256] = std::array::from_fn(|e| ((e * 5 + e / 32 + e / 128) % 4) as u8);
    let y = both(&block(&pack(&q), ONE));
    for e in 0..256 {
        assert_eq!(y[e], q[e] as f32 - 1.0, "element {e}");
    }
}

#[test]
fn bit_pairs_of_one_byte_are_32_apart() {
    // Byte 33 = 0b11_10_01_00: elements 128 + 1, +32, +64, +96 are -1, 0, 1, 2 (times d = -0.5).
    let mut qs = [0x55u8; 64]; // every other quant 1: value 0 * d = -0.0
    qs[33] = 0b1110_0100;
    let y = both(&block(&qs, MINUS_HALF));
    assert_eq!(y[129], 0.5);
    assert_eq!(y[161].to_bits(), 0x8000_0000);
    assert_eq!(y[193], -0.5);
    assert_eq!(y[225], -1.0);
    let rest: Vec<u32> = (0..256)
        .filter(|e| ![129, 161, 193, 225].contains(e))
        .map(|e| y[e].to_bits())
        .collect();
    assert!(rest.iter().all(|&b| b == 0x8000_0000));
}

#[test]
fn zero_quant_keeps_the_sign_of_d() {
    let y = both(&block(&[0x55; 64], 0xBC00));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    let y = both(&block(&[0x55; 64], ONE));
    assert!(bits(&y).iter().all(|&b| b == 0));
}

#[test]
fn subnormal_scale() {
    // d = 2^-24 (the smallest f16 subnormal): quants 3, 0 give 2^-23 and -2^-24 exactly.
    let y = both(&block(&[0b00_11_00_11; 64], 0x0001));
    assert_eq!(y[0], 2f32.powi(-23));
    assert_eq!(y[32], -(2f32.powi(-24)));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // A signalling f16 NaN is quieted with its payload kept, whatever the quant.
    let y = both(&block(&[0b11_10_01_00; 64], 0x7C01));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // inf * 0 is x86's default NaN (negative, quiet); inf * -1 = -inf; inf * 2 = inf.
    let y = both(&block(&[0b11_10_01_00; 64], 0x7C00));
    assert_eq!(y[0], f32::NEG_INFINITY);
    assert_eq!(y[32].to_bits(), 0xFFC0_0000);
    assert_eq!(y[64], f32::INFINITY);
    assert_eq!(y[96], f32::INFINITY);
}
