use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q5_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q5_0.md"),
    golden: ["all-types.gguf:Q5_0.weights", "all-types.gguf:Q5_0.bytes"],
}

/// One block from its raw fields.
fn block(d: u16, qh: u32, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(qh.to_le_bytes());
    b.extend(qs);
    b
}

/// The block holding the 5-bit quants `q` (0..31, before the -16) in element order.
fn block_of(d: u16, q: [u8; 32]) -> Vec<u8> {
    let qh = (0..32).fold(0u32, |h, e| h | (((q[e] >> 4) as u32 & 1) << e));
    let qs = std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    block(d, qh, qs)
}

fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q5_0, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn nibbles_split_in_halves_and_bit_e_of_qh_is_element_e() {
    // Only the nibbles: qs[j] = (15 - j) << 4 | j, qh = 0 -> element j is j - 16, element
    // j + 16 is -1 - j.
    let qs: [u8; 16] = std::array::from_fn(|j| ((15 - j as u8) << 4) | j as u8);
    let y = both(&block(0x3C00, 0, qs));
    for j in 0..16 {
        assert_eq!(y[j], j as f32 - 16.0, "element {j}");
        assert_eq!(y[j + 16], -1.0 - j as f32, "element {}", j + 16);
    }
    // Only the high bits, one at a time: bit e of qh lifts element e alone from -16 to 0.
    for e in 0..32 {
        let y = both(&block(0x3C00, 1 << e, [0; 16]));
        for (k, &v) in y.iter().enumerate() {
            assert_eq!(v, if k == e { 0.0 } else { -16.0 }, "bit {e}, element {k}");
        }
    }
    // Every value 0..31 at every position, d = 0.5.
    let q: [u8; 32] = std::array::from_fn(|e| (e as u8 * 7 + 3) % 32);
    let y = both(&block_of(0x3800, q));
    for e in 0..32 {
        assert_eq!(y[e], (q[e] as f32 - 16.0) * 0.5, "element {e}");
    }
}

#[test]
fn a_second_block_follows_without_padding() {
    let mut src = block(0x3C00, 0xFFFF_FFFF, [0xFF; 16]); // all 31 - 16 = 15
    src.extend(block(0x4000, 0, [0x00; 16])); // all -16 * 2
    let y = both(&src);
    assert!(y[..32].iter().all(|&v| v == 15.0));
    assert!(y[32..].iter().all(|&v| v == -32.0));
}

#[test]
fn zero_quant_keeps_the_sign_of_d() {
    // 5-bit value 16 (nibble 0, high bit 1) is the quant 0.
    let y = both(&block(0xBC00, 0xFFFF_FFFF, [0; 16])); // d = -1
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    let y = both(&block(0x3C00, 0xFFFF_FFFF, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0));
    // d = -0: -16 * -0 = +0.
    let y = both(&block(0x8000, 0, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // A signalling f16 NaN is quieted with its payload kept, whatever the quant.
    let y = both(&block(0xFC01, 0x0000_FFFF, [0x5A; 16]));
    assert!(
        bits(&y).iter().all(|&b| b == 0xFFC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // Inf * 0 is x86's default NaN (negative, quiet); Inf * -16 = -Inf; Inf * 15 = Inf.
    let mut qs = [0u8; 16];
    qs[2] = 0x0F;
    let y = both(&block(0x7C00, 0b101, qs));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1], f32::NEG_INFINITY);
    assert_eq!(y[2], f32::INFINITY);
}
