use super::*;
use proptest::prelude::*;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q4_K,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q4_k.md"),
    golden: ["all-types.gguf:Q4_K.weights", "all-types.gguf:Q4_K.bytes", "tiny-llama-q4_k_m.gguf:"],
}

/// Reference and fast outputs (as bits) of whole blocks; the baseline build must agree with the
/// dispatched one.
fn run(src: &[u8]) -> (Vec<u32>, Vec<u32>) {
    quant_core::conformance::paths(&Q4_K, Some(fast_baseline), src)
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = run(src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// Packs eight 6-bit scales and mins the way ggml's quantizer does (the inverse of
/// `get_scale_min_k4`), written from the layout drawing.
fn pack_scales(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    q
}

fn block(d: u16, dmin: u16, scales: [u8; 12], qs: &[u8; 128]) -> Vec<u8> {
    let mut b = Vec::with_capacity(BLOCK_BYTES);
    b.extend_from_slice(&d.to_le_bytes());
    b.extend_from_slice(&dmin.to_le_bytes());
    b.extend_from_slice(&scales);
    b.extend_from_slice(qs);
    b
}

const ONE: u16 = 0x3C00;
const MINUS_ONE: u16 = 0xBC00;
const HALF: u16 = 0x3800;

#[test]
fn scale_bytes_decode_literally() {
    let q = [
        0xC1, 0x02, 0x03, 0x04, 0x45, 0x06, 0x07, 0x08, 0x9A, 0x0B, 0x0C, 0x0D,
    ];
    assert_eq!(get_scale_min_k4(0, &q), (1, 5));
    assert_eq!(get_scale_min_k4(3, &q), (4, 8));
    assert_eq!(get_scale_min_k4(4, &q), (0x3A, 0x19));
    assert_eq!(get_scale_min_k4(5, &q), (11, 0));
    assert_eq!(get_scale_min_k4(8, &q), (0, 0));
}

#[test]
fn nibble_order_within_each_group_of_64() {
    let scales = pack_scales([1; 8], [0; 8]);
    let qs: [u8; 128] = std::array::from_fn(|i| (i % 16) as u8 | ((15 - (i % 16) as u8) << 4));
    let y = both(&block(ONE, ONE, scales, &qs));
    for g in 0..4 {
        for l in 0..32 {
            assert_eq!(y[64 * g + l], (l % 16) as f32, "g {g} l {l}");
            assert_eq!(y[64 * g + 32 + l], (15 - l % 16) as f32, "g {g} l {l}");
        }
    }
}

#[test]
fn each_sub_block_has_its_own_scale_and_min() {
    // d = 1, dmin = 0.5, every quant byte 0x21 (low nibble 1, high nibble 2).
    let sc = [1, 2, 3, 4, 17, 33, 49, 63];
    let m = [0, 1, 2, 3, 16, 32, 48, 62];
    let y = both(&block(ONE, HALF, pack_scales(sc, m), &[0x21; 128]));
    // sub-block s: sc[s] * q - 0.5 * m[s], q = 1 for even s (low nibbles), 2 for odd s.
    let want = [1.0, 3.5, 2.0, 6.5, 9.0, 50.0, 25.0, 95.0];
    for s in 0..8 {
        for l in 0..32 {
            assert_eq!(y[32 * s + l], want[s], "sub-block {s}");
        }
    }
}

#[test]
fn sign_of_zero_follows_ggml_order() {
    let zeros = [0u8; 128];
    let scales = pack_scales([1; 8], [0; 8]);
    // d1 * 0 = -0.0, m1 = +0.0: -0.0 - +0.0 = -0.0
    let y = both(&block(MINUS_ONE, ONE, scales, &zeros));
    assert!(bits(&y).iter().all(|&b| b == 0x8000_0000));
    // d1 * 0 = +0.0, m1 = 1 * 0 ... with dmin = -1: m1 = -0.0; +0.0 - -0.0 = +0.0
    let y = both(&block(ONE, MINUS_ONE, scales, &zeros));
    assert!(bits(&y).iter().all(|&b| b == 0));
    // -0.0 - -0.0 = +0.0
    let y = both(&block(MINUS_ONE, MINUS_ONE, scales, &zeros));
    assert!(bits(&y).iter().all(|&b| b == 0));
    // +0.0 - +0.0 = +0.0
    let y = both(&block(ONE, ONE, scales, &zeros));
    assert!(bits(&y).iter().all(|&b| b == 0));
}

#[test]
fn subnormal_scales() {
    // d = 2^-24, dmin = 2^-23; sc = 63, m = 63, q = 15: 63*15*2^-24 - 63*2^-23
    //   = 945*2^-24 - 126*2^-24 = 819 * 2^-24 = 0x384CC000
    let scales = pack_scales([63; 8], [63; 8]);
    let y = both(&block(0x0001, 0x0002, scales, &[0xFF; 128]));
    assert!(
        bits(&y).iter().all(|&b| b == 0x384C_C000),
        "{:#x}",
        y[0].to_bits()
    );
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    let scales = pack_scales([1, 0, 1, 0, 1, 0, 1, 0], [0; 8]);
    // d = NaN (signalling 0x7C01 -> 0x7FC02000), dmin = another NaN: d's payload wins.
    let y = both(&block(0x7C01, 0x7E05, scales, &[0x31; 128]));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // d = +inf: sc = 1 gives inf * q - 0; sc = 0 gives inf * 0 = x86's default NaN 0xFFC00000.
    let y = both(&block(0x7C00, ONE, scales, &[0x31; 128]));
    assert_eq!(y[0].to_bits(), 0x7F80_0000);
    assert_eq!(y[32].to_bits(), 0xFFC0_0000);
}

proptest! {
    #[test]
    fn scale_packing_round_trips(sc in prop::array::uniform8(0u8..64), m in prop::array::uniform8(0u8..64)) {
        let q = pack_scales(sc, m);
        for j in 0..8 {
            prop_assert_eq!(get_scale_min_k4(j, &q), (sc[j], m[j]));
        }
    }


}
