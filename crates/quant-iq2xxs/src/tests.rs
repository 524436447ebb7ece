use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ2_XXS,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq2_xxs.md"),
    golden: ["all-types.gguf:IQ2_XXS.weights", "all-types.gguf:IQ2_XXS.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ2_XXS, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// One sub-block's `(aux0, aux1)` from its fields, written from the layout drawing.
fn pair(idx: [u8; 4], sg: [u8; 4], s: u8) -> (u32, u32) {
    let aux0 = u32::from_le_bytes(idx);
    let mut aux1 = (s as u32 & 15) << 28;
    for (l, &g) in sg.iter().enumerate() {
        aux1 |= (g as u32 & 127) << (7 * l);
    }
    (aux0, aux1)
}

/// A block from `d` and its eight sub-block pairs.
fn block(d: u16, pairs: [(u32, u32); 8]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    for (a0, a1) in pairs {
        b.extend_from_slice(&a0.to_le_bytes());
        b.extend_from_slice(&a1.to_le_bytes());
    }
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

const ONE: u16 = 0x3C00;

#[test]
fn grid_index_signs_and_scale_are_where_the_layout_says() {
    // Grid entry 0 is eight 8s, entry 1 is 43 then seven 8s; sign index 1 is 0x81 (values 0 and
    // 7 negative), 3 is 0x03 (values 0 and 1).
    let mut pairs = [pair([0; 4], [0; 4], 0); 8];
    pairs[0] = pair([1, 0, 0, 0], [1, 0, 0, 0], 3);
    pairs[5] = pair([0, 0, 1, 0], [0, 0, 3, 0], 15);
    let y = both(&block(ONE, pairs));
    let mut want = [0.125f32 * 8.0; 256]; // s = 0: db = 0.5 * 0.25
    let db0 = 3.5 * 0.25;
    want[..32].fill(db0 * 8.0);
    want[0] = -db0 * 43.0;
    want[7] = -db0 * 8.0;
    let db5 = 15.5 * 0.25;
    want[160..192].fill(db5 * 8.0);
    want[160 + 16] = -db5 * 43.0;
    want[160 + 17] = -db5 * 8.0;
    assert_eq!(bits(&y), bits(&want));
}

#[test]
fn every_grid_entry_and_sign_pattern_reads_as_the_tables_say() {
    // Entry i, sign index i % 128 and scale i % 16 in group i % 32 of block i / 32.
    let mut src = Vec::new();
    for b in 0..8 {
        let mut pairs = [(0, 0); 8];
        for (ib, p) in pairs.iter_mut().enumerate() {
            let i = |l: usize| 32 * b + 4 * ib + l;
            *p = pair(
                std::array::from_fn(|l| i(l) as u8),
                std::array::from_fn(|l| (i(l) * 5 % 128) as u8),
                (b * 8 + ib) as u8,
            );
        }
        src.extend(block(0x4000, pairs)); // d = 2
    }
    let y = both(&src);
    for (e, &v) in y.iter().enumerate() {
        let (b, ib, l, j) = (e / 256, e % 256 / 32, e % 32 / 8, e % 8);
        let i = 32 * b + 4 * ib + l;
        let mag = IQ2XXS_GRID[i].to_le_bytes()[j] as f32;
        let neg = KSIGNS_IQ2XS[i * 5 % 128] >> j & 1 != 0;
        let db = 2.0 * (0.5 + ((b * 8 + ib) % 16) as f32) * 0.25;
        let want = if neg { -db * mag } else { db * mag };
        assert_eq!(v.to_bits(), want.to_bits(), "element {e}");
    }
}

#[test]
fn zero_scale_gives_zeros_signed_by_the_sign_bits() {
    // Sign index 127 is 0xFF: every value negative.
    let neg = [pair([9, 8, 7, 6], [127; 4], 5); 8];
    assert!(bits(&both(&block(0x0000, neg)))
        .iter()
        .all(|&b| b == 0x8000_0000));
    assert!(bits(&both(&block(0x8000, neg))).iter().all(|&b| b == 0));
    let pos = [pair([9, 8, 7, 6], [0; 4], 5); 8];
    assert!(bits(&both(&block(0x0000, pos))).iter().all(|&b| b == 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_flip_sign_with_the_sign_bits() {
    // Sign index 1 = 0x81: values 0 and 7 of each group negative.
    let pairs = [pair([0; 4], [1; 4], 0); 8];
    // A signalling f16 NaN is quieted with its payload kept; the sign flip reaches it too.
    let y = bits(&both(&block(0x7C01, pairs)));
    for (e, &b) in y.iter().enumerate() {
        let want = if e % 8 == 0 || e % 8 == 7 {
            0xFFC0_2000
        } else {
            0x7FC0_2000
        };
        assert_eq!(b, want, "element {e}");
    }
    let y = both(&block(0x7C00, pairs));
    for (e, &v) in y.iter().enumerate() {
        let want = if e % 8 == 0 || e % 8 == 7 {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
        assert_eq!(v, want, "element {e}");
    }
}
