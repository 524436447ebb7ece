use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: Q5_K,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/q5_k.md"),
    golden: ["all-types.gguf:Q5_K.weights", "all-types.gguf:Q5_K.bytes", "tiny-llama-q5_k_m.gguf:"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&Q5_K, Some(fast_baseline), src);
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

/// A block from its fields.
fn block(d: u16, dmin: u16, scales: [u8; 12], qh: &[u8; 32], qs: &[u8; 128]) -> Vec<u8> {
    let mut b = Vec::with_capacity(BLOCK_BYTES);
    b.extend_from_slice(&d.to_le_bytes());
    b.extend_from_slice(&dmin.to_le_bytes());
    b.extend_from_slice(&scales);
    b.extend_from_slice(qh);
    b.extend_from_slice(qs);
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

/// Packs 256 five-bit quants (element order) into `qh` and `qs`, from the layout drawing.
fn pack_quants(q: &[u8; 256]) -> ([u8; 32], [u8; 128]) {
    let mut qh = [0u8; 32];
    let mut qs = [0u8; 128];
    for (e, &v) in q.iter().enumerate() {
        let (s, l) = (e / 32, e % 32);
        let (g, upper) = (s / 2, s % 2 == 1);
        qs[32 * g + l] |= (v & 0xF) << if upper { 4 } else { 0 };
        qh[l] |= ((v >> 4) & 1) << s;
    }
    (qh, qs)
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
    let sc = [0, 1, 17, 63, 32, 47, 5, 63];
    let m = [63, 2, 0, 33, 48, 15, 62, 1];
    let packed = pack_scales(sc, m);
    for j in 0..8 {
        assert_eq!(get_scale_min_k4(j, &packed), (sc[j], m[j]), "sub-block {j}");
    }
}

#[test]
fn five_bit_quants_in_element_order() {
    // Every element gets its own 5-bit value; d = 1, sc = 1, m = 0 gives y = q.
    let q: [u8; 256] = std::array::from_fn(|e| ((e * 7 + e / 32) % 32) as u8);
    let (qh, qs) = pack_quants(&q);
    let y = both(&block(ONE, ONE, pack_scales([1; 8], [0; 8]), &qh, &qs));
    for e in 0..256 {
        assert_eq!(y[e], q[e] as f32, "element {e}");
    }
}

#[test]
fn high_bit_s_of_qh_is_bit_4_of_sub_block_s() {
    // Only the high bits set: element 32s + l is 16 exactly when bit s of qh[l] is.
    let qh: [u8; 32] = std::array::from_fn(|l| (l as u8).wrapping_mul(37) ^ 0x5A);
    let y = both(&block(
        ONE,
        ONE,
        pack_scales([1; 8], [0; 8]),
        &qh,
        &[0; 128],
    ));
    for s in 0..8 {
        for l in 0..32 {
            let want = if qh[l] >> s & 1 == 1 { 16.0 } else { 0.0 };
            assert_eq!(y[32 * s + l], want, "sub-block {s} l {l}");
        }
    }
}

#[test]
fn each_sub_block_has_its_own_scale_and_min() {
    // d = 1, dmin = 0.5, every quant byte 0x21 (low nibble 1, high nibble 2), every high bit
    // set: the quants are 17 (even sub-blocks) and 18 (odd sub-blocks).
    let sc = [1, 2, 3, 4, 17, 33, 49, 63];
    let m = [0, 1, 2, 3, 16, 32, 48, 62];
    let y = both(&block(
        ONE,
        HALF,
        pack_scales(sc, m),
        &[0xFF; 32],
        &[0x21; 128],
    ));
    for s in 0..8 {
        let q = if s % 2 == 0 { 17.0 } else { 18.0 };
        let want = sc[s] as f32 * q - 0.5 * m[s] as f32;
        for l in 0..32 {
            assert_eq!(y[32 * s + l], want, "sub-block {s}");
        }
    }
}

#[test]
fn sign_of_zero_follows_ggml_order() {
    let scales = pack_scales([1; 8], [0; 8]);
    let z = |d, dmin| bits(&both(&block(d, dmin, scales, &[0; 32], &[0; 128])));
    // d1 * 0 = -0.0, m1 = +0.0: -0.0 - +0.0 = -0.0
    assert!(z(MINUS_ONE, ONE).iter().all(|&b| b == 0x8000_0000));
    // +0.0 - (-1 * 0 = -0.0) = +0.0
    assert!(z(ONE, MINUS_ONE).iter().all(|&b| b == 0));
    // -0.0 - -0.0 = +0.0
    assert!(z(MINUS_ONE, MINUS_ONE).iter().all(|&b| b == 0));
    // +0.0 - +0.0 = +0.0
    assert!(z(ONE, ONE).iter().all(|&b| b == 0));
}

#[test]
fn subnormal_scales() {
    // d = 2^-24, dmin = 2^-23; sc = 63, m = 63, q = 31: 63*31*2^-24 - 63*2^-23
    //   = 1953*2^-24 - 126*2^-24 = 1827 * 2^-24 = 0x38E46000
    let scales = pack_scales([63; 8], [63; 8]);
    let y = both(&block(0x0001, 0x0002, scales, &[0xFF; 32], &[0xFF; 128]));
    assert_eq!(1827.0f32 * 2f32.powi(-24), f32::from_bits(0x38E4_6000));
    assert!(
        bits(&y).iter().all(|&b| b == 0x38E4_6000),
        "{:#x}",
        y[0].to_bits()
    );
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    let scales = pack_scales([1, 0, 1, 0, 1, 0, 1, 0], [0; 8]);
    // d = NaN (signalling 0x7C01 -> 0x7FC02000), dmin = another NaN: d's payload wins.
    let y = both(&block(0x7C01, 0x7E05, scales, &[0; 32], &[0x31; 128]));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // d = +inf: sc = 1 gives inf * q - 0 = inf; sc = 0 gives inf * 0 = x86's default NaN, and
    // so does q = 0 with sc = 1.
    let mut qs = [0x31; 128];
    qs[5] = 0x30;
    let y = both(&block(0x7C00, ONE, scales, &[0; 32], &qs));
    assert_eq!(y[0].to_bits(), 0x7F80_0000);
    assert_eq!(y[5].to_bits(), 0xFFC0_0000);
    assert_eq!(y[32].to_bits(), 0xFFC0_0000);
    // dmin = -inf with m = 1: finite - -inf = +inf.
    let scales = pack_scales([1; 8], [1; 8]);
    let y = both(&block(ONE, 0xFC00, scales, &[0; 32], &[0x31; 128]));
    assert!(y.iter().all(|&v| v == f32::INFINITY));
}
