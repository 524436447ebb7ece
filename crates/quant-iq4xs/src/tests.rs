use super::*;

use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: IQ4_XS,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/iq4_xs.md"),
    golden: ["all-types.gguf:IQ4_XS.weights", "all-types.gguf:IQ4_XS.bytes"],
}

/// ggml's `kvalues_iq4nl`, written out here to pin the generated table down.
const GGML_VALUES: [f32; 16] = [
    -127., -104., -83., -65., -49., -35., -22., -10., 1., 13., 25., 38., 53., 69., 89., 113.,
];

/// A block from its f16 scale, the eight 6-bit sub-block scales and the 128 index bytes.
fn block(d: u16, ls: [u8; 8], qs: &[u8; 128]) -> Vec<u8> {
    let mut scales_h = 0u16;
    let mut scales_l = [0u8; 4];
    for (ib, &l) in ls.iter().enumerate() {
        assert!(l < 64);
        scales_h |= ((l >> 4) as u16) << (2 * ib);
        scales_l[ib / 2] |= (l & 15) << (4 * (ib % 2));
    }
    let mut b = d.to_le_bytes().to_vec();
    b.extend_from_slice(&scales_h.to_le_bytes());
    b.extend_from_slice(&scales_l);
    b.extend_from_slice(qs);
    assert_eq!(b.len(), BLOCK_BYTES);
    b
}

/// Both paths (and the baseline build), asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&IQ4_XS, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

#[test]
fn every_sub_block_scale_in_every_position() {
    // 64 blocks, d = 1.0, every index 8 (value 1): element = ls - 32. Block b gives sub-block ib
    // the scale (b + 8 * ib) % 64, so each position sees all 64 scales.
    let mut src = Vec::new();
    for b in 0..64 {
        let ls: [u8; 8] = std::array::from_fn(|ib| ((b + 8 * ib) % 64) as u8);
        src.extend(block(0x3C00, ls, &[0x88; 128]));
    }
    let y = both(&src);
    for b in 0..64 {
        for ib in 0..8 {
            let want = ((b + 8 * ib) % 64) as f32 - 32.0;
            let sub = &y[256 * b + 32 * ib..256 * b + 32 * ib + 32];
            assert!(
                sub.iter().all(|&v| v == want),
                "block {b} sub-block {ib}: {sub:?}"
            );
        }
    }
}

#[test]
fn nibbles_of_each_sub_block_low_half_then_high_half() {
    // ls = 33 everywhere (dl = d = 1.0). Sub-block ib's byte j: low j, high (j + ib) % 16.
    let qs: [u8; 128] = std::array::from_fn(|k| {
        let (ib, j) = (k / 16, k % 16);
        j as u8 | ((((j + ib) % 16) as u8) << 4)
    });
    let y = both(&block(0x3C00, [33; 8], &qs));
    for ib in 0..8 {
        for j in 0..16 {
            assert_eq!(y[32 * ib + j], GGML_VALUES[j], "sub-block {ib} element {j}");
            assert_eq!(y[32 * ib + j + 16], GGML_VALUES[(j + ib) % 16]);
        }
    }
}

#[test]
fn scale_is_rounded_before_the_element() {
    // d = 1 + 2^-10 (0x3C01), ls = 63 (dl = 31 * d, rounded), index 15 (113): the element is
    // (31 * d) * 113 with two roundings.
    let y = both(&block(0x3C01, [63; 8], &[0xFF; 128]));
    let d = 1.0f32 + 2f32.powi(-10);
    let want = (d * 31.0) * 113.0;
    assert!(y.iter().all(|&v| v.to_bits() == want.to_bits()));
}

#[test]
fn scale_32_gives_signed_zeros() {
    // ls = 32: dl = d * 0 = +0.0 for d = 1, so index 0 (-127) gives -0.0 and index 8 (1) +0.0.
    let y = both(&block(0x3C00, [32; 8], &[0x08; 128]));
    for ib in 0..8 {
        assert!(bits(&y[32 * ib..32 * ib + 16]).iter().all(|&b| b == 0));
        assert!(bits(&y[32 * ib + 16..32 * ib + 32])
            .iter()
            .all(|&b| b == 0x8000_0000));
    }
    // d = -1: dl = -0.0, the signs flip.
    let y = both(&block(0xBC00, [32; 8], &[0x08; 128]));
    assert!(bits(&y[..16]).iter().all(|&b| b == 0x8000_0000));
    assert!(bits(&y[16..32]).iter().all(|&b| b == 0));
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn inf_and_nan_scales_as_on_x86() {
    // d = +inf: ls = 32 gives inf * 0 = x86's default NaN in the whole sub-block; ls = 31 gives
    // dl = -inf, then -inf * -127 = +inf.
    let mut ls = [31u8; 8];
    ls[3] = 32;
    let y = both(&block(0x7C00, ls, &[0x00; 128]));
    for ib in 0..8 {
        let sub = bits(&y[32 * ib..32 * ib + 32]);
        let want = if ib == 3 { 0xFFC0_0000 } else { 0x7F80_0000 };
        assert!(sub.iter().all(|&b| b == want), "sub-block {ib}: {sub:x?}");
    }
    // A signalling f16 NaN is quieted with its payload kept, through both products.
    let y = both(&block(0x7C01, [5; 8], &[0x5A; 128]));
    assert!(bits(&y).iter().all(|&b| b == 0x7FC0_2000));
}
