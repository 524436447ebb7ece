use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ3_XXS,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq3_xxs.md"),
    golden: ["all-types.gguf:IQ3_XXS.weights", "all-types.gguf:IQ3_XXS.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ3_XXS, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A word of a sub-block from its scale and its four 7-bit sign indices.
fn word(scale: u32, sign_idx: [u32; 4]) -> u32 {
    (scale << 28) | (0..4).fold(0, |w, l| w | ((sign_idx[l] & 127) << (7 * l)))
}

/// A block from its fields.
fn block(d: u16, qs: &[u8; 64], words: [u32; 8]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(qs);
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

/// Value `k` of grid entry `i`.
fn grid(i: u8, k: usize) -> f32 {
    IQ3XXS_GRID[i as usize].to_le_bytes()[k] as f32
}

const FOUR: u16 = 0x4400; // d = 4 with scale 0: db = 4 * 0.5 * 0.5 = 1

#[test]
fn grid_entries_in_element_order() {
    let qs: [u8; 64] = std::array::from_fn(|t| (t as u8).wrapping_mul(73).wrapping_add(5));
    let y = both(&block(FOUR, &qs, [0; 8]));
    for (e, &v) in y.iter().enumerate() {
        assert_eq!(v, grid(qs[e / 4], e % 4), "element {e}");
    }
    // The table's first entry is four 4s; its last is 4, 28, 52, 62.
    let y = both(&block(FOUR, &[0; 64], [0; 8]));
    assert!(y.iter().all(|&v| v == 4.0));
    let y = both(&block(FOUR, &[255; 64], [0; 8]));
    assert_eq!(y[..8], [4.0, 28.0, 52.0, 62.0, 4.0, 28.0, 52.0, 62.0]);
}

#[test]
fn signs_are_seven_bits_and_their_parity() {
    // Every 7-bit sign index, four per sub-block word, 32 over a block, four blocks.
    let mut src = Vec::new();
    for blk in 0..4u32 {
        let words: [u32; 8] = std::array::from_fn(|ib| {
            let base = 32 * blk + 4 * ib as u32;
            word(0, [base, base + 1, base + 2, base + 3])
        });
        src.extend(block(FOUR, &[0; 64], words));
    }
    let y = both(&src);
    for blk in 0..4usize {
        for ib in 0..8 {
            for l in 0..4 {
                let idx = (32 * blk + 4 * ib + l) as u32;
                // Bit 7: set when the seven given bits have an odd number of ones.
                let full = idx | ((idx.count_ones() & 1) << 7);
                for k in 0..8 {
                    let e = 256 * blk + 32 * ib + 8 * l + k;
                    let want = if full >> k & 1 == 1 { -4.0 } else { 4.0 };
                    assert_eq!(y[e], want, "block {blk} ib {ib} l {l} k {k}");
                }
            }
        }
    }
}

#[test]
fn each_sub_block_has_its_own_scale() {
    let words: [u32; 8] = std::array::from_fn(|ib| word([0, 1, 2, 5, 8, 13, 14, 15][ib], [0; 4]));
    let y = both(&block(0x3C00, &[0; 64], words)); // d = 1, every grid value 4
    for ib in 0..8 {
        let s = (words[ib] >> 28) as f32;
        let want = 1.0 * (0.5 + s) * 0.5 * 4.0;
        for k in 0..32 {
            assert_eq!(y[32 * ib + k], want, "sub-block {ib}");
        }
    }
}

#[test]
fn products_are_exact() {
    // 11 bits of d, 5 of 0.5 + s, 5 of the grid value: every product fits in f32's 24 bits, so
    // the values equal the exact products (d = 1 + 2^-10, s = 2; entry 248: 28, 28, 28, 62).
    let d = 1.0 + 2f64.powi(-10);
    let y = both(&block(0x3C01, &[248; 64], [word(2, [0; 4]); 8]));
    assert_eq!(IQ3XXS_GRID[248], 0x3e1c_1c1c);
    assert_eq!(y[0] as f64, d * 2.5 * 0.5 * 28.0);
    assert_eq!(y[3] as f64, d * 2.5 * 0.5 * 62.0);
}

#[test]
fn sign_of_zero_follows_d_and_the_element_sign() {
    // Sign index 1: ksigns = 0x81, elements 0 and 7 of each group negative.
    let words = [word(0, [1; 4]); 8];
    let y = bits(&both(&block(0x0000, &[0; 64], words)));
    let want: Vec<u32> = (0..256)
        .map(|e| {
            let neg = matches!(e % 8, 0 | 7);
            if neg {
                0x8000_0000
            } else {
                0
            }
        })
        .collect();
    assert_eq!(y, want, "+0");
    let y = bits(&both(&block(0x8000, &[0; 64], words)));
    let want: Vec<u32> = (0..256)
        .map(|e| {
            let neg = matches!(e % 8, 0 | 7);
            if neg {
                0
            } else {
                0x8000_0000
            }
        })
        .collect();
    assert_eq!(y, want, "-0");
}

#[test]
fn subnormal_scale() {
    // d = 2^-24, s = 15: db = 2^-24 * 15.5 * 0.5 = 7.75 * 2^-24; times 4 = 31 * 2^-24, exact.
    let y = both(&block(0x0001, &[0; 64], [word(15, [0; 4]); 8]));
    assert!(y.iter().all(|&v| v == 31.0 * 2f32.powi(-24)));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // Sign index 1: ksigns = 0x81, elements 0 and 7 of each group negative.
    let words = [word(3, [1; 4]); 8];
    let neg = |e: usize| matches!(e % 8, 0 | 7);
    // A NaN d stays that NaN, quieted, with its sign flipped where the element is negative
    // (ggml's compiled `* (sign ? -1.f : 1.f)` is a negation).
    let y = bits(&both(&block(0x7C01, &[7; 64], words)));
    let want: Vec<u32> = (0..256)
        .map(|e| if neg(e) { 0xFFC0_2000 } else { 0x7FC0_2000 })
        .collect();
    assert_eq!(y, want);
    let y = bits(&both(&block(0xFE05, &[7; 64], words)));
    let want: Vec<u32> = (0..256)
        .map(|e| if neg(e) { 0x7FC0_A000 } else { 0xFFC0_A000 })
        .collect();
    assert_eq!(y, want);
    // An infinite d: inf with the element's sign.
    let y = both(&block(0x7C00, &[7; 64], words));
    let want: Vec<f32> = (0..256)
        .map(|e| {
            if neg(e) {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            }
        })
        .collect();
    assert_eq!(y, want);
}
