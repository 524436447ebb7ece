use super::*;
use quant_core::conformance::{bits, SPECIAL_F16};
use quant_core::random_bytes;
use quant_core::QuantFormat;

quant_testkit::format_suite! {
    format: IQ1_M,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq1_m.md"),
    golden: ["all-types.gguf:IQ1_M.weights", "all-types.gguf:IQ1_M.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ1_M, Some(fast_baseline), src);
    if let Some(i) = r.iter().zip(&f).position(|(a, b)| a != b) {
        panic!(
            "fast differs from reference at {i}: {:#010x} vs {:#010x}",
            f[i], r[i]
        );
    }
    r.into_iter().map(f32::from_bits).collect()
}

/// A block from its fields, packed from the layout drawing: the f16 scale `d`, the 11-bit grid
/// index and delta sign of each of the 32 groups, and the 3-bit scales `s1`, `s2` of each
/// sub-block.
fn block(d: u16, index: [u16; 32], negative: [bool; 32], s1: [u8; 8], s2: [u8; 8]) -> Vec<u8> {
    let mut b: Vec<u8> = index.iter().map(|&i| (i & 0xFF) as u8).collect();
    for ib in 0..8 {
        for pair in 0..2 {
            let mut qh = 0u8;
            for half in 0..2 {
                let g = 4 * ib + 2 * pair + half;
                let nibble = ((index[g] >> 8) & 7) as u8 | if negative[g] { 8 } else { 0 };
                qh |= nibble << (4 * half);
            }
            b.push(qh);
        }
    }
    for k in 0..4 {
        let (a, c) = (2 * k, 2 * k + 1);
        let sc = (s1[a] as u16 & 7)
            | ((s2[a] as u16 & 7) << 3)
            | ((s1[c] as u16 & 7) << 6)
            | ((s2[c] as u16 & 7) << 9)
            | (((d >> (4 * k)) & 0xF) << 12);
        b.extend_from_slice(&sc.to_le_bytes());
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
    // ggml's entry 1: +1 followed by seven -1.
    assert_eq!(IQ1S_GRID[1], 0xFFFF_FFFF_FFFF_FF01);
    let mut index = [0u16; 32];
    index[0] = 1;
    let y = both(&block(ONE, index, [false; 32], [0; 8], [0; 8]));
    assert_eq!(y[0], 1.125);
    assert!(y[1..].iter().all(|&v| v == -0.875));
}

#[test]
fn indices_and_delta_signs_select_groups_in_element_order() {
    let index: [u16; 32] =
        std::array::from_fn(|g| ((g as u16 * 523 + 77) % 256) | ((g as u16 % 8) << 8));
    let negative: [bool; 32] = std::array::from_fn(|g| (g * 5) % 3 == 1);
    let y = both(&block(ONE, index, negative, [0; 8], [0; 8]));
    for g in 0..32 {
        let delta = if negative[g] { -0.125 } else { 0.125 };
        for j in 0..8 {
            assert_eq!(
                y[8 * g + j] as f64,
                grid(index[g], j) + delta,
                "group {g} value {j}"
            );
        }
    }
}

#[test]
fn qh_nibbles_are_read_as_ggml_reads_them() {
    // One group at a time: its nibble of qh (index bits 8..10 and the sign) alone set.
    for g in 0..32 {
        for nibble in 0..16u8 {
            let mut b = block(ONE, [0; 32], [false; 32], [0; 8], [0; 8]);
            b[QH + g / 2] = nibble << (4 * (g % 2));
            let y = both(&b);
            let idx = ((nibble & 7) as u16) << 8;
            let delta = if nibble & 8 != 0 { -0.125 } else { 0.125 };
            for (e, &v) in y.iter().enumerate() {
                let want = if e / 8 == g {
                    grid(idx, e % 8) + delta
                } else {
                    -0.875
                };
                assert_eq!(v as f64, want, "group {g} nibble {nibble:#x} element {e}");
            }
        }
    }
}

#[test]
fn sub_block_scales_are_odd_and_pair_up_groups() {
    let index: [u16; 32] = std::array::from_fn(|g| (g as u16 * 701 + 5) % 2048);
    let s1 = [0, 1, 2, 3, 4, 5, 6, 7];
    let s2 = [7, 3, 5, 0, 6, 2, 1, 4];
    let negative: [bool; 32] = std::array::from_fn(|g| g % 3 == 0);
    let y = both(&block(HALF, index, negative, s1, s2));
    for (e, &v) in y.iter().enumerate() {
        let (ib, g, j) = (e / 32, e / 8, e % 8);
        let s = if g % 4 < 2 { s1[ib] } else { s2[ib] };
        let delta = if negative[g] { -0.125 } else { 0.125 };
        let want = 0.5 * (2 * s as i32 + 1) as f64 * (grid(index[g], j) + delta);
        assert_eq!(v as f64, want, "element {e}");
    }
}

#[test]
fn super_scale_nibbles_assemble_as_ggml_does() {
    // Nibble k of d is the top nibble of sc[k]; the low 12 bits of sc never reach d.
    let b = block(0xABCD, [0; 32], [false; 32], [7; 8], [7; 8]);
    let x: &[u8; BLOCK_BYTES] = b.as_slice().try_into().unwrap();
    assert_eq!(scale_words(x), [0xDFFF, 0xCFFF, 0xBFFF, 0xAFFF]);
    assert_eq!(super_scale_bits(scale_words(x)), 0xABCD);
    assert_eq!(super_scale_bits([0x1000, 0x2000, 0x3000, 0x4000]), 0x4321);
    assert_eq!(super_scale_bits([0x0FFF; 4]), 0);
}

/// Every one of the 65536 f16 patterns as the assembled scale (sub-scales 0, grid entry 0 =
/// all -1, delta +1/8, so y = d * -0.875, exact): the values are checked against an independent
/// decoding of the pattern, and the fast path against the reference.
#[test]
fn every_assembled_scale_pattern_decodes_exactly() {
    let mut src = Vec::with_capacity(65536 * BLOCK_BYTES);
    for h in 0..=u16::MAX {
        src.extend_from_slice(&block(h, [0; 32], [false; 32], [0; 8], [0; 8]));
    }
    let y = both(&src);
    for h in 0..=u16::MAX {
        let out = &y[h as usize * BLOCK_ELEMS..][..BLOCK_ELEMS];
        let first = out[0].to_bits();
        assert!(
            bits(out).iter().all(|&b| b == first),
            "d {h:#06x}: values differ"
        );
        let (sign, exp, man) = ((h as u32 >> 15) << 31, (h >> 10) & 0x1F, (h & 0x3FF) as u32);
        if exp != 0x1F {
            // Finite d: -(d * 0.875), exact (a zero d gives a zero of the opposite sign).
            let want = -(f16_value(h) * 0.875) as f32;
            assert_eq!(first, want.to_bits(), "d {h:#06x}");
        } else if man == 0 {
            let want = if sign == 0 {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            };
            assert_eq!(out[0], want, "d {h:#06x}");
        } else {
            assert!(out[0].is_nan(), "d {h:#06x}");
            // On x86 the quieted NaN of d is propagated unchanged, payload and sign included.
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            assert_eq!(first, sign | 0x7FC0_0000 | (man << 13), "d {h:#06x}");
        }
    }
}

/// The special scale patterns of the shared suite, through the nibbles, with every other bit of
/// the blocks random: the fast path gives the reference's bits.
#[test]
fn fast_equals_reference_with_special_assembled_scales() {
    for (s, &h) in SPECIAL_F16.iter().enumerate() {
        let mut src = random_bytes(16 * BLOCK_BYTES, 0x1A1B + s as u64);
        for block in src.chunks_exact_mut(BLOCK_BYTES) {
            let x: &mut [u8; BLOCK_BYTES] = block.try_into().unwrap();
            set_super_scale_bits(x, h);
            assert_eq!(super_scale_bits(scale_words(x)), h);
        }
        both(&src);
    }
}

#[test]
fn setting_the_scale_keeps_every_other_bit() {
    let orig = random_bytes(BLOCK_BYTES, 0xB17);
    for h in [0u16, 0xFFFF, 0x1234, 0x7C01] {
        let mut b = orig.clone();
        let x: &mut [u8; BLOCK_BYTES] = b.as_mut_slice().try_into().unwrap();
        set_super_scale_bits(x, h);
        assert_eq!(super_scale_bits(scale_words(x)), h);
        for (i, (&a, &c)) in orig.iter().zip(&b).enumerate() {
            let mask = if i >= SC && i % 2 == 1 { 0x0F } else { 0xFF };
            assert_eq!(a & mask, c & mask, "byte {i}");
        }
    }
}

#[test]
fn made_finite_scales_are_finite_f16_of_the_old_bits() {
    let mut src = random_bytes(4096 * BLOCK_BYTES + 7, 0xF1F1);
    let before = src.clone();
    IQ1_M.make_scales_finite(&mut src);
    for (old, new) in before
        .chunks_exact(BLOCK_BYTES)
        .zip(src.chunks_exact(BLOCK_BYTES))
    {
        let (old, new): (&[u8; BLOCK_BYTES], &[u8; BLOCK_BYTES]) =
            (old.try_into().unwrap(), new.try_into().unwrap());
        let h = super_scale_bits(scale_words(new));
        assert_eq!(
            h,
            quant_core::finite_f16(super_scale_bits(scale_words(old)))
        );
        assert!(f16_value(h).abs() >= 2f64.powi(-11) && f16_value(h).abs() < 0.125);
        // Only the four nibbles changed.
        let mut expect = *old;
        set_super_scale_bits(&mut expect, h);
        assert_eq!(&expect, new);
    }
    // The trailing partial block is left alone.
    assert_eq!(src[4096 * BLOCK_BYTES..], before[4096 * BLOCK_BYTES..]);
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn infinite_scale_gives_signed_infinities() {
    let index: [u16; 32] = std::array::from_fn(|g| g as u16 * 64);
    let y = both(&block(0x7C00, index, [true; 32], [2; 8], [5; 8]));
    for e in 0..BLOCK_ELEMS {
        let want = if grid(index[e / 8], e % 8) - 0.125 > 0.0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
        assert_eq!(y[e], want, "element {e}");
    }
}
