use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q3_K,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q3_k.md"),
    golden: ["all-types.gguf:Q3_K.weights", "all-types.gguf:Q3_K.bytes"],
}

const ONE: u16 = 0x3C00;
const MINUS_ONE: u16 = 0xBC00;

/// Stores the signed quant `q` (`-4..=3`) of element `e`, following the layout page: low bits
/// in field k = (e % 128) / 32 of qs[32 * (e / 128) + e % 32], high bit (set: no -4) in bit
/// e / 32 of hmask[e % 32].
fn set_q(b: &mut [u8], e: usize, q: i8) {
    let u = (q + 4) as u8;
    let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let i = QS_OFFSET + 32 * n + l;
    b[i] = (b[i] & !(3 << (2 * k))) | ((u & 3) << (2 * k));
    let bit = e / 32;
    let h = HMASK_OFFSET + l;
    b[h] = (b[h] & !(1 << bit)) | ((u >> 2) << bit);
}

/// Stores the 6-bit scale `k` as `raw` (the scale plus 32), following the layout page.
fn set_scale(b: &mut [u8], k: usize, raw: u8) {
    let lo = SCALES_OFFSET + k % 8;
    let sh = 4 * (k / 8);
    b[lo] = (b[lo] & !(0xF << sh)) | ((raw & 0xF) << sh);
    let hi = SCALES_OFFSET + 8 + k % 4;
    let sh = 2 * (k / 4);
    b[hi] = (b[hi] & !(3 << sh)) | ((raw >> 4) << sh);
}

/// A block with super-scale `d`, scales `sc` (`-32..=31`) and every quant `q` (`-4..=3`).
fn block(d: u16, sc: [i8; 16], q: i8) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_BYTES];
    for (k, &s) in sc.iter().enumerate() {
        set_scale(&mut b, k, (s + 32) as u8);
    }
    for e in 0..BLOCK_ELEMS {
        set_q(&mut b, e, q);
    }
    b[D_OFFSET..D_OFFSET + 2].copy_from_slice(&d.to_le_bytes());
    b
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q3_K, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn direct_scale_reading_equals_ggmls_unpacking() {
    let check = |p: &[u8; 12]| {
        let ggml = unpack_scales_ggml(p);
        for (k, &g) in ggml.iter().enumerate() {
            assert_eq!(scale_raw(p, k) as i8, g, "scale {k} of {p:02x?}");
        }
    };
    // Every single bit, then pseudo-random bytes.
    for bit in 0..96 {
        let mut p = [0u8; 12];
        p[bit / 8] = 1 << (bit % 8);
        check(&p);
        check(&p.map(|b| !b));
    }
    let bytes = quant_core::random_bytes(12 * 4096, 0x03_0C);
    for p in bytes.chunks_exact(12) {
        check(p.try_into().unwrap());
    }
}

#[test]
fn set_scale_matches_ggmls_unpacking() {
    let mut b = vec![0u8; BLOCK_BYTES];
    let raw: [u8; 16] = std::array::from_fn(|k| ((k * 37 + 5) % 64) as u8);
    for (k, &r) in raw.iter().enumerate() {
        set_scale(&mut b, k, r);
    }
    let p: &[u8; 12] = b[SCALES_OFFSET..].first_chunk().unwrap();
    assert_eq!(unpack_scales_ggml(p), raw.map(|r| r as i8));
}

#[test]
fn every_element_reads_its_own_bits() {
    // Scale 1, every quant 0; give one element at a time a non-zero quant.
    let base = block(ONE, [1; 16], 0);
    for e in 0..BLOCK_ELEMS {
        let q = [-4, -3, -2, -1, 1, 2, 3][e % 7];
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
fn a_clear_high_bit_subtracts_four() {
    // All bytes zero but d and the scales: low 0, high bit clear, so every quant is -4.
    let mut b = vec![0u8; BLOCK_BYTES];
    for k in 0..16 {
        set_scale(&mut b, k, 33);
    }
    b[D_OFFSET..D_OFFSET + 2].copy_from_slice(&ONE.to_le_bytes());
    assert!(both(&b).iter().all(|&v| v == -4.0));
    // Every high bit set, low bits 3: +3.
    b[HMASK_OFFSET..HMASK_OFFSET + 32].fill(0xFF);
    b[QS_OFFSET..QS_OFFSET + 64].fill(0xFF);
    assert!(both(&b).iter().all(|&v| v == 3.0));
    // hmask[0] bit 5 clear: element 160 alone drops to -1.
    b[HMASK_OFFSET] = 0b1101_1111;
    let y = both(&b);
    assert_eq!(y[160], -1.0);
    assert_eq!(y.iter().filter(|&&v| v != 3.0).count(), 1);
}

#[test]
fn quant_fields_run_low_bits_first() {
    // qs[0] = 0b11_10_01_00 and every high bit set: elements 0, 32, 64, 96 are 0, 1, 2, 3;
    // qs[32] the other way round for elements 128, 160, 192, 224.
    let mut b = block(ONE, [1; 16], 0);
    b[QS_OFFSET] = 0b1110_0100;
    b[QS_OFFSET + 32] = 0b0001_1011;
    let y = both(&b);
    assert_eq!([y[0], y[32], y[64], y[96]], [0.0, 1.0, 2.0, 3.0]);
    assert_eq!([y[128], y[160], y[192], y[224]], [3.0, 2.0, 1.0, 0.0]);
}

#[test]
fn each_run_of_16_uses_its_own_signed_scale() {
    let sc: [i8; 16] = [-32, 31, 1, -1, 2, -2, 17, -17, 5, 9, -30, 30, 0, 7, -8, 15];
    // d = 0.5, quant 3: (0.5 * sc) * 3
    let y = both(&block(0x3800, sc, 3));
    for e in 0..BLOCK_ELEMS {
        assert_eq!(y[e], 0.5 * sc[e / 16] as f32 * 3.0, "element {e}");
    }
}

#[test]
fn signed_zeros() {
    // d = -1, scale 1, quant 0: -1 * 0 = -0.0.
    let y = both(&block(MINUS_ONE, [1; 16], 0));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    // d = -1, scale 0: dl = -0.0; times 3 = -0.0, times -4 = +0.0.
    let y = both(&block(MINUS_ONE, [0; 16], 3));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    let y = both(&block(MINUS_ONE, [0; 16], -4));
    assert!(bits(&y).iter().all(|&b| b == 0));
}

#[test]
fn extremes_are_exact() {
    // d = 65504, scale -32, quant -4: 65504 * 128 = 8384512.
    let y = both(&block(0x7BFF, [-32; 16], -4));
    assert!(y.iter().all(|&v| v == 8_384_512.0));
    // Subnormal d = 2^-24, scale 31, quant 3: 93 * 2^-24.
    let y = both(&block(0x0001, [31; 16], 3));
    assert!(y.iter().all(|&v| v == 93.0 * 2f32.powi(-24)));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    // Infinite d with a zero scale: inf * 0 is x86's default NaN (negative, quiet).
    let y = both(&block(0x7C00, [0; 16], 1));
    assert!(bits(&y).iter().all(|&b| b == 0xFFC0_0000));
    // Infinite d, scale -1: dl = -inf; times 2 = -inf, times 0 = the default NaN.
    let mut b = block(0x7C00, [-1; 16], 2);
    set_q(&mut b, 7, 0);
    let y = both(&b);
    assert_eq!(y[0], f32::NEG_INFINITY);
    assert_eq!(y[7].to_bits(), 0xFFC0_0000);
    // A signalling NaN d is quieted with its payload kept, through both products.
    let y = both(&block(0x7C01, [0; 16], 0));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
}
