use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ1_S,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq1_s.md"),
    golden: ["all-types.gguf:IQ1_S.weights", "all-types.gguf:IQ1_S.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ1_S, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A block from its fields, packed from the layout drawing: the 11-bit grid index of each of
/// the 32 groups, the 3-bit scale `s` and the delta sign of each sub-block.
fn block(d: u16, index: [u16; 32], s: [u8; 8], negative: [bool; 8]) -> Vec<u8> {
    let mut b = d.to_le_bytes().to_vec();
    b.extend(index.iter().map(|&i| (i & 0xFF) as u8));
    for ib in 0..8 {
        let mut qh = ((s[ib] as u16 & 7) << 12) | if negative[ib] { 0x8000 } else { 0 };
        for l in 0..4 {
            qh |= ((index[4 * ib + l] >> 8) & 7) << (3 * l);
        }
        b.extend_from_slice(&qh.to_le_bytes());
    }
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

/// Value `j` of grid entry `i`, from the table as ggml packs it (byte `j`, little-endian).
fn grid(i: u16, j: usize) -> f64 {
    (IQ1S_GRID[i as usize].to_le_bytes()[j] as i8) as f64
}

/// The value of a finite f16, decoded here from its fields (independently of quant-core).
fn f16_value(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let (e, m) = ((h >> 10) & 0x1F, (h & 0x3FF) as f64);
    assert!(e != 0x1F, "not finite");
    sign * if e == 0 {
        m * 2f64.powi(-24)
    } else {
        (1024.0 + m) * 2f64.powi(e as i32 - 25)
    }
}

const ONE: u16 = 0x3C00;
const HALF: u16 = 0x3800;

#[test]
fn grid_entries_are_ternary_bytes_in_little_endian_order() {
    // ggml's first two entries: all -1, then +1 followed by seven -1.
    assert_eq!(IQ1S_GRID[0], u64::MAX);
    assert_eq!(IQ1S_GRID[1], 0xFFFF_FFFF_FFFF_FF01);
    let mut index = [0u16; 32];
    index[0] = 1;
    let y = both(&block(ONE, index, [0; 8], [false; 8]));
    assert_eq!(y[0], 1.125);
    assert!(y[1..8].iter().all(|&v| v == -0.875));
    assert!(y[8..].iter().all(|&v| v == -0.875));
}

#[test]
fn eleven_bit_indices_select_groups_in_element_order() {
    // Distinct indices that use every high-bit pattern in every position.
    let index: [u16; 32] =
        std::array::from_fn(|g| ((g as u16 * 523 + 77) % 2048) | ((g as u16 % 8) << 8));
    let y = both(&block(ONE, index, [0; 8], [false; 8]));
    for g in 0..32 {
        for j in 0..8 {
            let want = grid(index[g], j) + 0.125;
            assert_eq!(y[8 * g + j] as f64, want, "group {g} value {j}");
        }
    }
}

#[test]
fn sub_block_scale_is_odd_and_delta_sign_is_bit_15() {
    let index: [u16; 32] = std::array::from_fn(|g| (g as u16 * 701 + 5) % 2048);
    let s = [0, 1, 2, 3, 4, 5, 6, 7];
    let negative = [false, true, true, false, true, false, false, true];
    let y = both(&block(HALF, index, s, negative));
    for (e, &v) in y.iter().enumerate() {
        let (ib, g, j) = (e / 32, e / 8, e % 8);
        let delta = if negative[ib] { -0.125 } else { 0.125 };
        let want = 0.5 * (2 * s[ib] as i32 + 1) as f64 * (grid(index[g], j) + delta);
        assert_eq!(v as f64, want, "element {e}");
    }
}

#[test]
fn zero_scale_gives_zeros_signed_by_d_and_by_the_factor() {
    let mut index = [0u16; 32];
    index[0] = 1; // +1, then -1s
    let y = both(&block(0x8000, index, [0; 8], [false; 8])); // d = -0
                                                             // -0 * 1.125 = -0; -0 * -0.875 = +0.
    assert_eq!(y[0].to_bits(), 0x8000_0000);
    assert!(bits(&y[1..]).iter().all(|&b| b == 0));
    let y = both(&block(0x0000, index, [0; 8], [true; 8])); // d = +0, delta -1/8
    assert_eq!(y[0], 0.0); // +0 * 0.875
    assert_eq!(y[0].to_bits(), 0);
    assert!(bits(&y[1..]).iter().all(|&b| b == 0x8000_0000)); // +0 * -1.125
}

#[test]
fn subnormal_and_extreme_scales_are_exact() {
    let index: [u16; 32] = std::array::from_fn(|g| (g as u16 * 97) % 2048);
    for d in [0x0001u16, 0x03FF, 0x8001, 0x7BFF, 0xFBFF] {
        let df = f16_value(d);
        let y = both(&block(d, index, [7; 8], [false; 8]));
        for e in 0..BLOCK_ELEMS {
            let want = df * 15.0 * (grid(index[e / 8], e % 8) + 0.125);
            assert_eq!(y[e] as f64, want, "d {d:#06x} element {e}");
        }
    }
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    let index: [u16; 32] = std::array::from_fn(|g| g as u16 * 64);
    // A signalling NaN is quieted with its payload kept, and stays that NaN.
    let y = both(&block(0x7C01, index, [3; 8], [true; 8]));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // The factor (grid + delta) is never zero: an infinite d gives infinities, signed.
    let y = both(&block(0xFC00, index, [0; 8], [false; 8]));
    for e in 0..BLOCK_ELEMS {
        let want = if grid(index[e / 8], e % 8) + 0.125 > 0.0 {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
        assert_eq!(y[e], want, "element {e}");
    }
}
