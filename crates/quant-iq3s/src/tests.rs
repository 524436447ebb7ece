use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ3_S,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq3_s.md"),
    golden: ["all-types.gguf:IQ3_S.weights", "all-types.gguf:IQ3_S.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ3_S, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A block from its fields.
fn block(d: u16, qs: &[u8; 64], qh: &[u8; 8], signs: &[u8; 32], scales: &[u8; 4]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(qs);
    b.extend_from_slice(qh);
    b.extend_from_slice(signs);
    b.extend_from_slice(scales);
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

/// Value `k` of grid entry `i`.
fn grid(i: usize, k: usize) -> f32 {
    IQ3S_GRID[i].to_le_bytes()[k] as f32
}

const ONE: u16 = 0x3C00; // with scale nibble 0: db = 1 * (1 + 0) = 1

#[test]
fn high_index_bit_is_bit_t_mod_8_of_qh() {
    // The layout page's reading (bit t % 8 of qh[t / 8]) is ggml's shifts, for every byte.
    for qh in 0..=255usize {
        for l in 0..4 {
            assert_eq!((qh << (8 - 2 * l)) & 256, ((qh >> (2 * l)) & 1) << 8);
            assert_eq!((qh << (7 - 2 * l)) & 256, ((qh >> (2 * l + 1)) & 1) << 8);
        }
    }
}

#[test]
fn nine_bit_grid_indices_in_element_order() {
    let qs: [u8; 64] = std::array::from_fn(|t| (t as u8).wrapping_mul(73).wrapping_add(5));
    let qh: [u8; 8] = [0x00, 0xFF, 0x5A, 0xA5, 0x01, 0x80, 0x3C, 0xC3];
    let y = both(&block(ONE, &qs, &qh, &[0; 32], &[0; 4]));
    for (e, &v) in y.iter().enumerate() {
        let t = e / 4;
        let index = qs[t] as usize | ((qh[t / 8] as usize >> (t % 8)) & 1) << 8;
        assert_eq!(v, grid(index, e % 4), "element {e}");
    }
    // The first entry is four 1s; the last of the 512 is 1, 1, 15, 15 (ggml's table).
    let y = both(&block(ONE, &[0; 64], &[0; 8], &[0; 32], &[0; 4]));
    assert!(y.iter().all(|&v| v == 1.0));
    let y = both(&block(ONE, &[255; 64], &[255; 8], &[0; 32], &[0; 4]));
    assert_eq!(IQ3S_GRID[511], 0x0f0f_0101);
    assert_eq!(y[..4], [1.0, 1.0, 15.0, 15.0]);
}

#[test]
fn sign_bit_e_mod_8_of_byte_e_div_8() {
    let signs: [u8; 32] = std::array::from_fn(|b| (b as u8).wrapping_mul(29) ^ 0x96);
    let y = both(&block(ONE, &[0; 64], &[0; 8], &signs, &[0; 4]));
    for (e, &v) in y.iter().enumerate() {
        let neg = signs[e / 8] >> (e % 8) & 1 == 1;
        assert_eq!(v, if neg { -1.0 } else { 1.0 }, "element {e}");
    }
}

#[test]
fn scale_nibbles_low_first() {
    // Sub-blocks 0..8 get scales 0, 15, 1, 14, 7, 8, 3, 12: db = 1 + 2s.
    let scales = [0xF0, 0xE1, 0x87, 0xC3];
    let y = both(&block(ONE, &[0; 64], &[0; 8], &[0; 32], &scales));
    let s = [0, 15, 1, 14, 7, 8, 3, 12];
    for ib in 0..8 {
        for k in 0..32 {
            assert_eq!(y[32 * ib + k], (1 + 2 * s[ib]) as f32, "sub-block {ib}");
        }
    }
}

#[test]
fn products_are_exact() {
    // 11 bits of d, 5 of 1 + 2s, 4 of the grid value: every product fits in f32's 24 bits, so
    // the values equal the exact products (here d = 1 + 2^-10, s = 15, entry 511: 1, 1, 15, 15).
    let d = 1.0 + 2f64.powi(-10);
    let y = both(&block(0x3C01, &[255; 64], &[255; 8], &[0; 32], &[0xFF; 4]));
    assert_eq!(y[0] as f64, d * 31.0);
    assert_eq!(y[2] as f64, d * 31.0 * 15.0);
}

#[test]
fn sign_of_zero_follows_d_and_the_element_sign() {
    let signs = [0x81u8; 32];
    let neg = |e: usize| matches!(e % 8, 0 | 7);
    let y = bits(&both(&block(0x0000, &[0; 64], &[0; 8], &signs, &[0x5A; 4])));
    for (e, &b) in y.iter().enumerate() {
        assert_eq!(b, if neg(e) { 0x8000_0000 } else { 0 }, "+0: element {e}");
    }
    let y = bits(&both(&block(0x8000, &[0; 64], &[0; 8], &signs, &[0x5A; 4])));
    for (e, &b) in y.iter().enumerate() {
        assert_eq!(b, if neg(e) { 0 } else { 0x8000_0000 }, "-0: element {e}");
    }
}

#[test]
fn subnormal_scale() {
    // d = 2^-24, s = 15, entry 511 (1, 1, 15, 15): 31 and 465 times 2^-24, exact.
    let y = both(&block(0x0001, &[255; 64], &[255; 8], &[0; 32], &[0xFF; 4]));
    assert_eq!(y[2], 465.0 * 2f32.powi(-24));
    assert_eq!(y[0], 31.0 * 2f32.powi(-24));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    let signs = [0x81u8; 32];
    let neg = |e: usize| matches!(e % 8, 0 | 7);
    // A NaN d stays that NaN, quieted, with its sign flipped where the element is negative
    // (ggml's compiled `* (sign ? -1.f : 1.f)` is a negation).
    let y = bits(&both(&block(0x7C01, &[9; 64], &[0; 8], &signs, &[0x21; 4])));
    let want: Vec<u32> = (0..256)
        .map(|e| if neg(e) { 0xFFC0_2000 } else { 0x7FC0_2000 })
        .collect();
    assert_eq!(y, want);
    // An infinite d: inf with the element's sign (d = -inf here).
    let y = both(&block(0xFC00, &[9; 64], &[0; 8], &signs, &[0x21; 4]));
    let want: Vec<f32> = (0..256)
        .map(|e| {
            if neg(e) {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    assert_eq!(y, want);
}
