use super::*;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q6_K,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q6_k.md"),
    golden: ["all-types.gguf:Q6_K.weights", "all-types.gguf:Q6_K.bytes", "tiny-llama-q6_k.gguf:", "tiny-llama-q4_k_m.gguf:"],
}

/// Reference and fast outputs (as bits) of whole blocks; the baseline build must agree with the
/// dispatched one.
fn run(src: &[u8]) -> (Vec<u32>, Vec<u32>) {
    quant_core::conformance::paths(&Q6_K, Some(fast_baseline), src)
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = run(src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// Stores the unsigned 6-bit quant `q` (0..64) of element `e`, following the layout table:
/// half n = e / 128; within it, run k = (e % 128) / 32 and lane l = e % 32.
fn set_q(b: &mut [u8], e: usize, q: u8) {
    let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let ql = 64 * n + l + 32 * (k & 1);
    let shift = if k < 2 { 0 } else { 4 };
    b[ql] = (b[ql] & !(0xF << shift)) | ((q & 0xF) << shift);
    let qh = 128 + 32 * n + l;
    b[qh] = (b[qh] & !(3 << (2 * k))) | ((q >> 4) << (2 * k));
}

/// A block with scale `d`, sub-scales `sc` and every quant `q` (unsigned, 0..64).
fn block(d: u16, sc: [i8; 16], q: u8) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_BYTES];
    for e in 0..256 {
        set_q(&mut b, e, q);
    }
    for (i, s) in sc.iter().enumerate() {
        b[192 + i] = *s as u8;
    }
    b[208..210].copy_from_slice(&d.to_le_bytes());
    b
}

const ONE: u16 = 0x3C00;
const MINUS_ONE: u16 = 0xBC00;

#[test]
fn every_element_reads_its_own_bits() {
    // Quant 32 is zero; give one element at a time a distinct quant and look where it lands.
    let base = block(ONE, [1; 16], 32);
    for e in 0..256 {
        let mut b = base.clone();
        let q = (e % 63) as u8 + if e % 63 >= 32 { 1 } else { 0 }; // 0..64, never 32
        set_q(&mut b, e, q);
        let y = both(&b);
        for (i, v) in y.iter().enumerate() {
            let want = if i == e { q as f32 - 32.0 } else { 0.0 };
            assert_eq!(*v, want, "element {e} set, element {i} read");
        }
    }
}

#[test]
fn each_run_of_16_uses_its_own_signed_scale() {
    let sc: [i8; 16] = [
        1, -2, 3, -4, 5, -6, 7, -8, 127, -128, 9, 10, -11, 12, 13, -14,
    ];
    // quant 33 is +1: y = (1.0 * sc) * 1
    let y = both(&block(ONE, sc, 33));
    for e in 0..256 {
        assert_eq!(y[e], sc[e / 16] as f32, "element {e}");
    }
}

#[test]
fn extremes_are_exact() {
    // d = 65504, sc = -128, q = -32: 65504 * 128 * 32 = 268304384 (0x4D7FE000)
    let y = both(&block(0x7BFF, [-128; 16], 0));
    assert!(bits(&y).iter().all(|&b| b == 0x4D7F_E000));
    // d = 2^-24 (subnormal f16), sc = 127, q = 31: 3937 * 2^-24
    let y = both(&block(0x0001, [127; 16], 63));
    assert!(y.iter().all(|&v| v == 3937.0 * 2f32.powi(-24)));
}

#[test]
fn sign_of_zero_follows_ggml_order() {
    let all = |y: &[f32], b: u32| bits(y).iter().all(|&x| x == b);
    // (d * sc) * 0 with quant 32
    assert!(all(&both(&block(MINUS_ONE, [1; 16], 32)), 0x8000_0000));
    assert!(all(&both(&block(ONE, [-1; 16], 32)), 0x8000_0000));
    assert!(all(&both(&block(MINUS_ONE, [-1; 16], 32)), 0));
    assert!(all(&both(&block(ONE, [1; 16], 32)), 0));
    // (d * 0) * -32
    assert!(all(&both(&block(ONE, [0; 16], 0)), 0x8000_0000));
    assert!(all(&both(&block(MINUS_ONE, [0; 16], 0)), 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    let mut sc = [1i8; 16];
    sc[1] = 0;
    let y = both(&block(0x7C00, sc, 0)); // d = +inf, q = -32
    assert_eq!(y[0].to_bits(), 0xFF80_0000); // inf * 1 * -32 = -inf
    assert_eq!(y[16].to_bits(), 0xFFC0_0000); // inf * 0 = x86's default NaN
    let y = both(&block(0x7C01, sc, 45)); // signalling NaN, quieted, payload kept
    assert!(bits(&y).iter().all(|&b| b == 0x7FC0_2000));
}
