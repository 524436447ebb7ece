use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ2_S,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq2_s.md"),
    golden: ["all-types.gguf:IQ2_S.weights", "all-types.gguf:IQ2_S.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ2_S, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A block from each group's 10-bit grid index and sign byte and the scale bytes, packed as the
/// layout drawing says.
fn block(d: u16, idx: [u16; 32], signs: [u8; 32], scales: [u8; 8]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(idx.iter().map(|&i| i as u8));
    b.extend_from_slice(&signs);
    let mut qh = [0u8; 8];
    for (g, &i) in idx.iter().enumerate() {
        qh[g / 4] |= (((i >> 8) & 3) as u8) << (2 * (g % 4));
    }
    b.extend_from_slice(&qh);
    b.extend_from_slice(&scales);
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

const ONE: u16 = 0x3C00;

#[test]
fn grid_index_signs_and_scales_are_where_the_layout_says() {
    // Grid entry 0 is eight 8s, entry 1 is 43 then seven 8s; entries 256, 512 and 768 need the
    // qh bits of their group.
    let mut idx = [0u16; 32];
    let mut signs = [0u8; 32];
    idx[0] = 1;
    signs[0] = 0x81; // values 0 and 7 negative
    idx[4 * 5 + 3] = 1; // sub-block 5, group 3 (high-nibble scale)
    signs[4 * 5 + 3] = 0x02;
    idx[4 * 7 + 1] = 256;
    idx[4 * 7 + 2] = 512;
    idx[4 * 7 + 3] = 768 + 5;
    signs[4 * 7 + 3] = 0xFF;
    let mut scales = [0u8; 8];
    scales[0] = 0x03; // groups 0, 1: s = 3; groups 2, 3: s = 0
    scales[5] = 0xF0; // groups 0, 1: s = 0; groups 2, 3: s = 15
    scales[7] = 0x21; // groups 0, 1: s = 1; groups 2, 3: s = 2
    let src = block(ONE, idx, signs, scales);
    assert_eq!(src[QH + 7], 0b11_10_01_00);
    let y = both(&src);
    let mut want = [0.125f32 * 8.0; 256]; // s = 0: db = 0.5 * 0.25
    let db = 3.5 * 0.25;
    want[..16].fill(db * 8.0);
    want[0] = -db * 43.0;
    want[7] = -db * 8.0;
    let db = 15.5 * 0.25;
    want[160 + 16..192].fill(db * 8.0);
    want[160 + 24] = db * 43.0;
    want[160 + 25] = -db * 8.0;
    for (g, e, neg) in [(29, 256, false), (30, 512, false), (31, 773, true)] {
        let db = if g < 30 { 1.5 * 0.25 } else { 2.5 * 0.25 };
        for (j, &m) in IQ2S_GRID[e].to_le_bytes().iter().enumerate() {
            want[8 * g + j] = if neg { -db * m as f32 } else { db * m as f32 };
        }
    }
    want[224..232].fill(1.5 * 0.25 * 8.0);
    assert_eq!(bits(&y), bits(&want));
}

#[test]
fn every_grid_entry_and_sign_byte_reads_as_the_tables_say() {
    // Entry i in group i % 32 of block i / 32, with sign byte i * 37 % 256; every scale nibble.
    let mut src = Vec::new();
    for b in 0..32 {
        let idx = std::array::from_fn(|g| (32 * b + g) as u16);
        let signs = std::array::from_fn(|g| ((32 * b + g) * 37 % 256) as u8);
        let scales =
            std::array::from_fn(|ib| (((b + ib) % 16) | ((15 - (b + 3 * ib) % 16) << 4)) as u8);
        src.extend(block(0x4000, idx, signs, scales)); // d = 2
    }
    let y = both(&src);
    for (e, &v) in y.iter().enumerate() {
        let (b, g, j) = (e / 256, e % 256 / 8, e % 8);
        let i = 32 * b + g;
        let mag = IQ2S_GRID[i].to_le_bytes()[j] as f32;
        let neg = (i * 37 % 256) >> j & 1 != 0;
        let ib = g / 4;
        let s = if g % 4 < 2 {
            (b + ib) % 16
        } else {
            15 - (b + 3 * ib) % 16
        };
        let db = 2.0 * (0.5 + s as f32) * 0.25;
        let want = if neg { -db * mag } else { db * mag };
        assert_eq!(v.to_bits(), want.to_bits(), "element {e}");
    }
}

#[test]
fn zero_scale_gives_zeros_signed_by_the_sign_bits() {
    let idx = [700u16; 32];
    let neg = [0xFF; 32];
    assert!(bits(&both(&block(0x0000, idx, neg, [0x5A; 8])))
        .iter()
        .all(|&b| b == 0x8000_0000));
    assert!(bits(&both(&block(0x8000, idx, neg, [0x5A; 8])))
        .iter()
        .all(|&b| b == 0));
    assert!(bits(&both(&block(0x0000, idx, [0; 32], [0x5A; 8])))
        .iter()
        .all(|&b| b == 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_flip_sign_with_the_sign_bits() {
    let idx = [0u16; 32];
    let signs = [0x81; 32]; // values 0 and 7 of each group negative
                            // A signalling f16 NaN is quieted with its payload kept; the sign flip reaches it too.
    let y = bits(&both(&block(0x7C01, idx, signs, [0x91; 8])));
    for (e, &b) in y.iter().enumerate() {
        let want = if e % 8 == 0 || e % 8 == 7 {
            0xFFC0_2000
        } else {
            0x7FC0_2000
        };
        assert_eq!(b, want, "element {e}");
    }
    let y = both(&block(0x7C00, idx, signs, [0x91; 8]));
    for (e, &v) in y.iter().enumerate() {
        let want = if e % 8 == 0 || e % 8 == 7 {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
        assert_eq!(v, want, "element {e}");
    }
}
