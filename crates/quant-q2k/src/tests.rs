use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q2_K,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q2_k.md"),
    golden: ["all-types.gguf:Q2_K.weights", "all-types.gguf:Q2_K.bytes"],
}

const ONE: u16 = 0x3C00;
const MINUS_ONE: u16 = 0xBC00;

/// Stores the 2-bit quant `q` of element `e`, following the layout page: half n = e / 128,
/// field k = (e % 128) / 32, byte l = e % 32 of the half.
fn set_q(b: &mut [u8], e: usize, q: u8) {
    let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let i = QS_OFFSET + 32 * n + l;
    b[i] = (b[i] & !(3 << (2 * k))) | ((q & 3) << (2 * k));
}

/// A block with super-scales `d`, `dmin`, scale/min bytes `scales` and every quant `q`.
fn block(d: u16, dmin: u16, scales: [u8; 16], q: u8) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_BYTES];
    b[SCALES_OFFSET..SCALES_OFFSET + 16].copy_from_slice(&scales);
    for e in 0..BLOCK_ELEMS {
        set_q(&mut b, e, q);
    }
    b[D_OFFSET..D_OFFSET + 2].copy_from_slice(&d.to_le_bytes());
    b[DMIN_OFFSET..DMIN_OFFSET + 2].copy_from_slice(&dmin.to_le_bytes());
    b
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q2_K, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn every_element_reads_its_own_bits() {
    // Scale 1, min 0: y = q. Give one element at a time a non-zero quant.
    let base = block(ONE, ONE, [0x01; 16], 0);
    for e in 0..BLOCK_ELEMS {
        let q = 1 + (e % 3) as u8;
        let mut b = base.clone();
        set_q(&mut b, e, q);
        let y = both(&b);
        for (i, v) in y.iter().enumerate() {
            let want = if i == e { q as f32 } else { 0.0 };
            assert_eq!(*v, want, "element {e} set, element {i} read");
        }
    }
}

#[test]
fn quant_fields_run_low_bits_first() {
    // Byte 0 of qs = 0b11_10_01_00: elements 0, 32, 64, 96 get quants 0, 1, 2, 3; byte 32
    // likewise for elements 128, 160, 192, 224.
    let mut b = block(ONE, ONE, [0x01; 16], 0);
    b[QS_OFFSET] = 0b1110_0100;
    b[QS_OFFSET + 32] = 0b0001_1011;
    let y = both(&b);
    assert_eq!([y[0], y[32], y[64], y[96]], [0.0, 1.0, 2.0, 3.0]);
    assert_eq!([y[128], y[160], y[192], y[224]], [3.0, 2.0, 1.0, 0.0]);
    assert_eq!(y.iter().filter(|&&v| v != 0.0).count(), 6);
}

#[test]
fn each_run_of_16_uses_its_own_scale_and_min() {
    // scales[s]: scale s (low nibble), min 15 - s (high nibble); every quant 3.
    let scales: [u8; 16] = std::array::from_fn(|s| (s as u8) | ((15 - s as u8) << 4));
    // d = 0.5, dmin = 0.25: y = (0.5 * s) * 3 - 0.25 * (15 - s)
    let y = both(&block(0x3800, 0x3400, scales, 3));
    for (e, &v) in y.iter().enumerate() {
        let s = (e / 16) as f32;
        assert_eq!(v, (0.5 * s) * 3.0 - 0.25 * (15.0 - s), "element {e}");
    }
}

#[test]
fn d_and_dmin_are_stored_last() {
    // d = 2 at byte 80, dmin = 1 at byte 82; scale 3, min 5, quant 1: 2 * 3 * 1 - 1 * 5 = 1.
    let y = both(&block(0x4000, ONE, [0x53; 16], 1));
    assert!(y.iter().all(|&v| v == 1.0));
    // Swapped: d = 1, dmin = 2: 3 - 10 = -7.
    let y = both(&block(ONE, 0x4000, [0x53; 16], 1));
    assert!(y.iter().all(|&v| v == -7.0));
}

#[test]
fn zero_quant_subtracts_after_multiplying() {
    // dl = -1, ml = +0: -1 * 0 - 0 = -0.0 - +0.0 = -0.0.
    let y = both(&block(MINUS_ONE, ONE, [0x01; 16], 0));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    // dl = -1, ml = -1 * 0 = -0.0: -0.0 - -0.0 = +0.0.
    let y = both(&block(MINUS_ONE, MINUS_ONE, [0x01; 16], 0));
    assert!(bits(&y).iter().all(|&b| b == 0));
    // dl = +1, ml = +0: +0.0.
    let y = both(&block(ONE, ONE, [0x01; 16], 0));
    assert!(bits(&y).iter().all(|&b| b == 0));
}

#[test]
fn extremes_are_exact() {
    // d = 65504, scale 15, quant 3, dmin = -65504, min 15: 65504*45 + 65504*15 = 3930240.
    let y = both(&block(0x7BFF, 0xFBFF, [0xFF; 16], 3));
    assert!(y.iter().all(|&v| v == 3_930_240.0));
    // Subnormal d = 2^-24, scale 1, quant 1, min 0: 2^-24 exactly.
    let y = both(&block(0x0001, ONE, [0x01; 16], 1));
    assert!(y.iter().all(|&v| v == 2f32.powi(-24)));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // Infinite d with a zero scale: inf * 0 is x86's default NaN (negative, quiet).
    let y = both(&block(0x7C00, ONE, [0x00; 16], 1));
    assert!(bits(&y).iter().all(|&b| b == 0xFFC0_0000));
    // Infinite d, scale 1: inf * 1 - 0 = inf; inf * 0 - 0 is the default NaN.
    let mut b = block(0x7C00, ONE, [0x01; 16], 1);
    set_q(&mut b, 5, 0);
    let y = both(&b);
    assert_eq!(y[0], f32::INFINITY);
    assert_eq!(y[5].to_bits(), 0xFFC0_0000);
    // A signalling NaN d is quieted with its payload; with a NaN dmin too, d's wins (first
    // operand of the subtraction).
    let y = both(&block(0x7C01, 0xFE02, [0x11; 16], 1));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // A NaN dmin alone: its payload, quieted, whatever the quant.
    let y = both(&block(ONE, 0xFC03, [0x11; 16], 2));
    assert!(bits(&y).iter().all(|&b| b == 0xFFC0_6000));
}
