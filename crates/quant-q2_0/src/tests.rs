use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q2_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q2_0.md"),
    golden: ["new-types.gguf:Q2_0.weights", "new-types.gguf:Q2_0.bytes"],
}

/// A block from its fields.
fn block(d: u16, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(&qs);
    b
}

/// Packs 64 two-bit quants (element order), from the layout drawing.
fn pack(q: [u8; 64]) -> [u8; 16] {
    let mut qs = [0u8; 16];
    for (j, &v) in q.iter().enumerate() {
        qs[j / 4] |= (v & 3) << (2 * (j % 4));
    }
    qs
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q2_0, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn quants_are_two_bit_fields_lowest_first() {
    let q: [u8; 64] = std::array::from_fn(|j| ((j * 3 + j / 5) % 4) as u8);
    let y = both(&block(0x3800, pack(q))); // d = 0.5
    for j in 0..64 {
        assert_eq!(y[j], (q[j] as f32 - 1.0) * 0.5, "element {j}");
    }
    // One byte 0b11_10_01_00: elements 0..4 are -d, 0, d, 2d.
    let mut qs = [0x55u8; 16];
    qs[0] = 0b1110_0100;
    let y = both(&block(0x4000, qs)); // d = 2
    assert_eq!(&y[..4], &[-2.0, 0.0, 2.0, 4.0]);
    assert!(y[4..].iter().all(|&v| v == 0.0));
}

#[test]
fn quant_one_is_zero_times_d() {
    // q = 1 gives (+0.0) * d: the sign of d.
    let y = bits(&both(&block(0xBC00, [0x55; 16]))); // d = -1
    assert!(y.iter().all(|&b| b == 0x8000_0000));
    let y = bits(&both(&block(0x3C00, [0x55; 16])));
    assert!(y.iter().all(|&b| b == 0));
    // d = -0.0: q = 0 gives -1 * -0.0 = +0.0, q = 2 gives -0.0.
    let y = bits(&both(&block(0x8000, [0b0010_1000; 16])));
    assert_eq!(&y[..4], &[0, 0x8000_0000, 0x8000_0000, 0]);
}

#[test]
fn subnormal_scale() {
    // d = 3 * 2^-24: 2d = 6 * 2^-24, exact.
    let y = both(&block(0x0003, [0xFF; 16]));
    assert!(y.iter().all(|&v| v == 6.0 * 2f32.powi(-24)));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // A signalling f16 NaN is quieted with its payload kept; times any quant it stays that NaN,
    // sign included (-1 * NaN is not a negation).
    let y = bits(&both(&block(0x7C01, [0b1110_0100; 16])));
    assert!(y.iter().all(|&b| b == 0x7FC0_2000), "{:#x}", y[0]);
    let y = bits(&both(&block(0xFE05, [0b1110_0100; 16])));
    assert!(y.iter().all(|&b| b == 0xFFC0_A000), "{:#x}", y[0]);
    // inf * 0 is x86's default NaN (negative, quiet); -1 * inf = -inf; 2 * inf = inf.
    let y = both(&block(0x7C00, [0b1110_0100; 16]));
    assert_eq!(y[0], f32::NEG_INFINITY);
    assert_eq!(y[1].to_bits(), 0xFFC0_0000);
    assert_eq!(y[2], f32::INFINITY);
    assert_eq!(y[3], f32::INFINITY);
}
