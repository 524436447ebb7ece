use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ2_XS,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq2_xs.md"),
    golden: ["all-types.gguf:IQ2_XS.weights", "all-types.gguf:IQ2_XS.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ2_XS, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A group's `u16` from its grid index and sign index, written from the layout drawing.
fn word(idx: u16, sg: u16) -> u16 {
    (idx & 511) | ((sg & 127) << 9)
}

/// A block from its fields.
fn block(d: u16, qs: [u16; 32], scales: [u8; 8]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    for w in qs {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b.extend_from_slice(&scales);
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

const ONE: u16 = 0x3C00;

#[test]
fn grid_index_signs_and_scales_are_where_the_layout_says() {
    // Grid entry 0 is eight 8s, entry 1 is 43 then seven 8s, entry 511 ends the table; sign
    // index 1 is 0x81 (values 0 and 7 negative), 3 is 0x03 (values 0 and 1).
    let mut qs = [0u16; 32];
    qs[0] = word(1, 1);
    qs[4 * 5 + 3] = word(1, 3); // sub-block 5, group 3 (high-nibble scale)
    qs[31] = word(511, 0);
    let mut scales = [0u8; 8];
    scales[0] = 0x03; // groups 0, 1: s = 3; groups 2, 3: s = 0
    scales[5] = 0xF0; // groups 0, 1: s = 0; groups 2, 3: s = 15
    scales[7] = 0x20; // groups 2, 3: s = 2
    let y = both(&block(ONE, qs, scales));
    let mut want = [0.125f32 * 8.0; 256]; // s = 0: db = 0.5 * 0.25
    let db = 3.5 * 0.25;
    want[..16].fill(db * 8.0);
    want[0] = -db * 43.0;
    want[7] = -db * 8.0;
    let db = 15.5 * 0.25;
    want[160 + 16..192].fill(db * 8.0);
    want[160 + 24] = -db * 43.0;
    want[160 + 25] = -db * 8.0;
    let db = 2.5 * 0.25;
    want[224 + 16..256].fill(db * 8.0);
    for (j, &m) in IQ2XS_GRID[511].to_le_bytes().iter().enumerate() {
        want[248 + j] = db * m as f32;
    }
    assert_eq!(bits(&y), bits(&want));
}

#[test]
fn every_grid_entry_and_sign_pattern_reads_as_the_tables_say() {
    // Entry i with sign index i % 128 in group i % 32 of block i / 32; every scale nibble.
    let mut src = Vec::new();
    for b in 0..16 {
        let qs = std::array::from_fn(|g| {
            let i = (32 * b + g) as u16;
            word(i, i * 5)
        });
        let scales =
            std::array::from_fn(|ib| (((b + ib) % 16) | ((15 - (b + 3 * ib) % 16) << 4)) as u8);
        src.extend(block(0x4000, qs, scales)); // d = 2
    }
    let y = both(&src);
    for (e, &v) in y.iter().enumerate() {
        let (b, g, j) = (e / 256, e % 256 / 8, e % 8);
        let i = 32 * b + g;
        let mag = IQ2XS_GRID[i].to_le_bytes()[j] as f32;
        let neg = KSIGNS_IQ2XS[i * 5 % 128] >> j & 1 != 0;
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
    // Sign index 127 is 0xFF: every value negative.
    let neg = [word(300, 127); 32];
    assert!(bits(&both(&block(0x0000, neg, [0x5A; 8])))
        .iter()
        .all(|&b| b == 0x8000_0000));
    assert!(bits(&both(&block(0x8000, neg, [0x5A; 8])))
        .iter()
        .all(|&b| b == 0));
    let pos = [word(300, 0); 32];
    assert!(bits(&both(&block(0x0000, pos, [0x5A; 8])))
        .iter()
        .all(|&b| b == 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_flip_sign_with_the_sign_bits() {
    // Sign index 1 = 0x81: values 0 and 7 of each group negative.
    let qs = [word(0, 1); 32];
    // A signalling f16 NaN is quieted with its payload kept; the sign flip reaches it too (the
    // golden IQ2_XS.bytes tensor has such a block).
    let y = bits(&both(&block(0x7C01, qs, [0x91; 8])));
    for (e, &b) in y.iter().enumerate() {
        let want = if e % 8 == 0 || e % 8 == 7 {
            0xFFC0_2000
        } else {
            0x7FC0_2000
        };
        assert_eq!(b, want, "element {e}");
    }
    let y = both(&block(0x7C00, qs, [0x91; 8]));
    for (e, &v) in y.iter().enumerate() {
        let want = if e % 8 == 0 || e % 8 == 7 {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
        assert_eq!(v, want, "element {e}");
    }
}
