use super::*;
use quant_core::conformance::bits;

quant_testkit::format_suite! {
    format: TQ1_0,
    baseline: Some(fast_baseline),
    layout: LAYOUT_DOC,
    docs_page: include_str!("../../../docs/formats/tq1_0.md"),
    golden: ["all-types.gguf:TQ1_0.weights", "all-types.gguf:TQ1_0.bytes"],
}

/// Both paths, asserted equal, as f32.
fn both(src: &[u8]) -> Vec<f32> {
    let (r, f) = quant_core::conformance::paths(&TQ1_0, Some(fast_baseline), src);
    assert_eq!(r, f, "fast differs from reference");
    r.into_iter().map(f32::from_bits).collect()
}

/// A byte holding the trits `t` (first trit most significant), as a base-3 fraction rounded up:
/// `ceil(v * 256 / 243)` with `v` the five-digit base-3 number (four trits get a zero fifth).
fn pack_trits(t: &[u8]) -> u8 {
    let mut v = 0u32;
    for i in 0..5 {
        v = v * 3 + *t.get(i).unwrap_or(&0) as u32;
    }
    (v * 256).div_ceil(243) as u8
}

/// The trit of byte `b` at position `n`, as the layout page defines it.
fn trit(b: u8, n: usize) -> u8 {
    ((b.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as u8
}

/// A block whose element `e` holds trit `t[e]`, with scale `d`, from the layout drawing.
fn block(t: &[u8; 256], d: u16) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_BYTES];
    for m in 0..32 {
        let digits: Vec<u8> = (0..5).map(|n| t[32 * n + m]).collect();
        b[m] = pack_trits(&digits);
    }
    for m in 0..16 {
        let digits: Vec<u8> = (0..5).map(|n| t[160 + 16 * n + m]).collect();
        b[32 + m] = pack_trits(&digits);
    }
    for j in 0..4 {
        let digits: Vec<u8> = (0..4).map(|n| t[240 + 4 * n + j]).collect();
        b[48 + j] = pack_trits(&digits);
    }
    b[52..54].copy_from_slice(&d.to_le_bytes());
    b
}

const ONE: u16 = 0x3C00;

#[test]
fn every_five_trit_number_round_trips() {
    for v in 0..243u32 {
        let digits: Vec<u8> = (0..5).map(|i| (v / 3u32.pow(4 - i) % 3) as u8).collect();
        let b = pack_trits(&digits);
        let got: Vec<u8> = (0..5).map(|n| trit(b, n)).collect();
        assert_eq!(got, digits, "v = {v}, byte {b:#04x}");
    }
}

#[test]
fn every_byte_gives_trits_in_range() {
    // Also bytes no quantizer writes (243..256): the formula never leaves 0..3.
    for b in 0..=255u8 {
        for n in 0..5 {
            assert!(trit(b, n) < 3, "byte {b} trit {n}");
        }
    }
    // A block of 0xFF bytes decodes through the same formula.
    let mut x = vec![0xFFu8; BLOCK_BYTES];
    x[52..54].copy_from_slice(&ONE.to_le_bytes());
    let y = both(&x);
    let want: Vec<f32> = (0..256)
        .map(|e| {
            // The trit position of element e in its byte.
            let n = match e {
                0..160 => e / 32,
                160..240 => (e - 160) / 16,
                _ => (e - 240) / 4,
            };
            trit(0xFF, n) as f32 - 1.0
        })
        .collect();
    assert_eq!(y, want);
}

#[test]
fn trits_in_element_order() {
    let t: [u8; 256] = std::array::from_fn(|e| ((e * 7 + e / 5 + e / 160) % 3) as u8);
    let y = both(&block(&t, ONE));
    for e in 0..256 {
        assert_eq!(y[e], t[e] as f32 - 1.0, "element {e}");
    }
}

#[test]
fn one_byte_feeds_elements_a_run_apart() {
    // Trits 2, 0, 2, 0, 2 in qs[3]; trits 0, 2, 0, 2 in qh[1]; all others 1 (value 0).
    let mut t = [1u8; 256];
    for n in 0..5 {
        t[32 * n + 3] = if n % 2 == 0 { 2 } else { 0 };
    }
    for n in 0..4 {
        t[240 + 4 * n + 1] = if n % 2 == 0 { 0 } else { 2 };
    }
    let y = both(&block(&t, 0xB800)); // d = -0.5
    assert_eq!(
        [y[3], y[35], y[67], y[99], y[131]],
        [-0.5, 0.5, -0.5, 0.5, -0.5]
    );
    assert_eq!([y[241], y[245], y[249], y[253]], [0.5, -0.5, 0.5, -0.5]);
    let zeros = (0..256).filter(|&e| t[e] == 1).map(|e| y[e].to_bits());
    assert!(zeros.into_iter().all(|b| b == 0x8000_0000));
}

#[test]
fn subnormal_scale() {
    let t: [u8; 256] = std::array::from_fn(|e| (e % 3) as u8);
    let y = both(&block(&t, 0x0001)); // d = 2^-24
    for e in 0..256 {
        assert_eq!(y[e], (t[e] as f32 - 1.0) * 2f32.powi(-24), "element {e}");
    }
}

#[test]
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn nan_and_inf_scales_as_on_x86() {
    let t: [u8; 256] = std::array::from_fn(|e| (e % 3) as u8);
    // A signalling f16 NaN is quieted with its payload kept, whatever the trit.
    let y = both(&block(&t, 0x7C01));
    assert!(
        bits(&y).iter().all(|&b| b == 0x7FC0_2000),
        "{:#x}",
        y[0].to_bits()
    );
    // inf * 0 is x86's default NaN (negative, quiet); inf * -1 = -inf.
    let y = both(&block(&t, 0x7C00));
    for e in 0..256 {
        let want = [0xFF80_0000, 0xFFC0_0000, 0x7F80_0000][t[e] as usize];
        assert_eq!(y[e].to_bits(), want, "element {e}");
    }
}
