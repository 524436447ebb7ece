use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q5_1,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q5_1.md"),
    golden: ["all-types.gguf:Q5_1.weights", "all-types.gguf:Q5_1.bytes"],
}

/// One block from its raw fields.
fn block(d: u16, m: u16, qh: u32, qs: [u8; 16]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(m.to_le_bytes());
    b.extend(qh.to_le_bytes());
    b.extend(qs);
    b
}

/// The block holding the 5-bit quants `q` (0..31) in element order.
fn block_of(d: u16, m: u16, q: [u8; 32]) -> Vec<u8> {
    let qh = (0..32).fold(0u32, |h, e| h | (((q[e] >> 4) as u32 & 1) << e));
    let qs = std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    block(d, m, qh, qs)
}

fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q5_1, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn nibbles_split_in_halves_and_bit_e_of_qh_is_element_e() {
    // Only the nibbles: qs[j] = (15 - j) << 4 | j, qh = 0, d = 1, m = 0.
    let qs: [u8; 16] = std::array::from_fn(|j| ((15 - j as u8) << 4) | j as u8);
    let y = both(&block(0x3C00, 0x0000, 0, qs));
    for j in 0..16 {
        assert_eq!(y[j], j as f32, "element {j}");
        assert_eq!(y[j + 16], (15 - j) as f32, "element {}", j + 16);
    }
    // Only the high bits, one at a time: bit e of qh makes element e alone 16.
    for e in 0..32 {
        let y = both(&block(0x3C00, 0x0000, 1 << e, [0; 16]));
        for (k, &v) in y.iter().enumerate() {
            assert_eq!(v, if k == e { 16.0 } else { 0.0 }, "bit {e}, element {k}");
        }
    }
    // Every value 0..31 at every position, d = 0.5, m = -2.
    let q: [u8; 32] = std::array::from_fn(|e| (e as u8 * 7 + 3) % 32);
    let y = both(&block_of(0x3800, 0xC000, q));
    for e in 0..32 {
        assert_eq!(y[e], q[e] as f32 * 0.5 - 2.0, "element {e}");
    }
}

#[test]
fn a_second_block_follows_without_padding() {
    let mut src = block(0x3C00, 0x3C00, 0xFFFF_FFFF, [0xFF; 16]); // all 31 + 1
    src.extend(block(0x4000, 0xBC00, 0, [0x00; 16])); // all 0 * 2 - 1
    let y = both(&src);
    assert!(y[..32].iter().all(|&v| v == 32.0));
    assert!(y[32..].iter().all(|&v| v == -1.0));
}

#[test]
fn zero_quant_sign_of_zero_comes_from_the_add() {
    // q = 0, d = -1: 0 * -1 = -0; -0 + +0 = +0, -0 + -0 = -0.
    let y = both(&block(0xBC00, 0x0000, 0, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x0000_0000));
    let y = both(&block(0xBC00, 0x8000, 0, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    // q = 0, d = +1, m = -0: +0 + -0 = +0.
    let y = both(&block(0x3C00, 0x8000, 0, [0; 16]));
    assert!(bits(&y).iter().all(|&b| b == 0x0000_0000));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_as_on_x86() {
    // d = +Inf: 0 * Inf is x86's default NaN, whatever m; 16 * Inf + -Inf too.
    let y = both(&block(0x7C00, 0x3C00, 0b10, [0; 16]));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1], f32::INFINITY);
    let y = both(&block(0x7C00, 0xFC00, 0b10, [0; 16]));
    assert_eq!(y[0].to_bits(), 0xFFC0_0000);
    assert_eq!(y[1].to_bits(), 0xFFC0_0000);
    // A signalling NaN m is quieted with its payload kept, and survives the add.
    let y = both(&block(0x3C00, 0x7C01, 0b10, [0x11; 16]));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // NaN d and NaN m: the product (the add's first operand) gives the payload.
    let y = both(&block(0xFD55, 0x7C01, 0b10, [0x11; 16]));
    assert!(
        bits(&y).iter().all(|&b| b == 0xFFEA_A000),
        "{:#x}",
        y[0].to_bits()
    );
}
