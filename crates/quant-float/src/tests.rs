use super::*;
use proptest::prelude::*;

fn run(format: &dyn QuantFormat, src: &[u8]) -> (Vec<u32>, Vec<u32>) {
    quant_core::conformance::paths(format, None, src)
}

/// ggml's portable F16 -> F32 (the magic-number method of `ggml_compute_fp16_to_fp32`),
/// written out independently as an oracle for `half`'s conversion.
fn ggml_portable_f16_to_f32(h: u16) -> u32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    let exp_offset = 0xE0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;
    let magic_mask = 126u32 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5f32;
    let cutoff = 1u32 << 27;
    sign | if two_w < cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    }
}

#[test]
fn f16_known_values() {
    let cases: [(u16, u32); 13] = [
        (0x0000, 0x0000_0000),
        (0x8000, 0x8000_0000), // -0.0 keeps its sign
        (0x3C00, 0x3F80_0000), // 1.0
        (0xC000, 0xC000_0000), // -2.0
        (0x3555, 0x3EAA_A000),
        (0x0001, 0x3380_0000), // smallest subnormal: 2^-24, a normal f32
        (0x03FF, 0x387F_C000), // largest subnormal
        (0x7BFF, 0x477F_E000), // 65504
        (0x7C00, 0x7F80_0000), // +inf
        (0xFC00, 0xFF80_0000), // -inf
        (0x7C01, 0x7FC0_2000), // signalling NaN: quieted, payload kept
        (0xFE00, 0xFFC0_0000), // quiet NaN, negative
        (0x7FFF, 0x7FFF_E000),
    ];
    let src: Vec<u8> = cases.iter().flat_map(|c| c.0.to_le_bytes()).collect();
    let (r, f) = run(&F16, &src);
    let want: Vec<u32> = cases.iter().map(|c| c.1).collect();
    assert_eq!(r, want);
    assert_eq!(f, want);
}

#[test]
fn f16_all_65536_values_match_ggml_portable_conversion() {
    // Longer than one fast-path chunk, so the vectorized slice conversion is exercised too.
    let src: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let (r, f) = run(&F16, &src);
    for h in 0..=u16::MAX {
        let want = ggml_portable_f16_to_f32(h);
        assert_eq!(r[h as usize], want, "reference, f16 bits {h:#06x}");
        assert_eq!(f[h as usize], want, "fast, f16 bits {h:#06x}");
    }
}

#[test]
fn half_hardware_and_software_conversions_agree() {
    // `f16::to_f32` picks F16C at run time where the CPU has it; `to_f32_const` is always the
    // software path. Both must give ggml's bits, so the result does not depend on the machine.
    for h in 0..=u16::MAX {
        let want = ggml_portable_f16_to_f32(h);
        assert_eq!(f16::from_bits(h).to_f32_const().to_bits(), want, "{h:#06x}");
        assert_eq!(f16_bits_to_f32(h).to_bits(), want, "{h:#06x}");
    }
}

#[test]
fn bf16_known_values_keep_signalling_nans() {
    let cases: [(u16, u32); 7] = [
        (0x0000, 0x0000_0000),
        (0x8000, 0x8000_0000),
        (0x3F80, 0x3F80_0000),
        (0x0001, 0x0001_0000), // subnormal stays subnormal
        (0xFF80, 0xFF80_0000),
        (0x7F81, 0x7F81_0000), // signalling NaN is NOT quieted (unlike half::bf16::to_f32)
        (0xFFC1, 0xFFC1_0000),
    ];
    let src: Vec<u8> = cases.iter().flat_map(|c| c.0.to_le_bytes()).collect();
    let (r, f) = run(&BF16, &src);
    let want: Vec<u32> = cases.iter().map(|c| c.1).collect();
    assert_eq!(r, want);
    assert_eq!(f, want);
}

#[test]
fn bf16_all_65536_values_are_shifted_bits() {
    let src: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let (r, f) = run(&BF16, &src);
    for h in 0..=u16::MAX {
        assert_eq!(r[h as usize], (h as u32) << 16);
        assert_eq!(f[h as usize], (h as u32) << 16);
    }
}

#[test]
fn f32_copies_bits_including_signalling_nan() {
    let words = [
        0x7F80_0001u32,
        0xFFFF_FFFF,
        0x8000_0000,
        0x0000_0001,
        0x3F80_0000,
    ];
    let src: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let (r, f) = run(&F32, &src);
    assert_eq!(r, words);
    assert_eq!(f, words);
}

/// `(f64 bits, f32 bits)` pairs whose f32 bits are worked out by hand.
const F64_CASES: [(u64, u32); 27] = [
    (0x0000_0000_0000_0000, 0x0000_0000),
    (0x8000_0000_0000_0000, 0x8000_0000), // -0.0 keeps its sign
    (0x3FF0_0000_0000_0000, 0x3F80_0000), // 1.0
    (0xC000_0000_0000_0000, 0xC000_0000), // -2.0
    (0x3FD5_5555_5555_5555, 0x3EAA_AAAB), // 1/3: rounds up
    (0x3FB9_9999_9999_999A, 0x3DCC_CCCD), // 0.1
    // Ties to even: 1 + 2^-24 (half-way, 1.0 is even) stays 1.0; 1 + 3*2^-24 goes up to even.
    (0x3FF0_0000_1000_0000, 0x3F80_0000),
    (0x3FF0_0000_3000_0000, 0x3F80_0002),
    (0x3FF0_0000_1000_0001, 0x3F80_0001), // just above the tie: up
    (0x7FF0_0000_0000_0000, 0x7F80_0000), // +inf
    (0xFFF0_0000_0000_0000, 0xFF80_0000), // -inf
    (0x47EF_FFFF_E000_0000, 0x7F7F_FFFF), // f32::MAX exactly
    (0x47EF_FFFF_EFFF_FFFF, 0x7F7F_FFFF), // just below 2^128 - 2^103: still MAX
    (0x47EF_FFFF_F000_0000, 0x7F80_0000), // 2^128 - 2^103, a tie: to even, i.e. infinity
    (0xC7F0_0000_0000_0000, 0xFF80_0000), // -2^128 overflows to -inf
    (0x7FEF_FFFF_FFFF_FFFF, 0x7F80_0000), // f64::MAX
    (0x3810_0000_0000_0000, 0x0080_0000), // 2^-126, the smallest normal f32
    (0x380F_FFFF_FFFF_FFFF, 0x0080_0000), // just below it: rounds up to it
    (0x36A0_0000_0000_0000, 0x0000_0001), // 2^-149, the smallest subnormal
    (0x3690_0000_0000_0000, 0x0000_0000), // 2^-150, a tie: to even zero
    (0xB690_0000_0000_0000, 0x8000_0000), // -2^-150: negative zero
    (0x3690_0000_0000_0001, 0x0000_0001), // just above 2^-150: up
    (0x36A8_0000_0000_0000, 0x0000_0002), // 3 * 2^-150, a tie between 1 and 2: to even 2
    (0x0000_0000_0000_0001, 0x0000_0000), // smallest f64 subnormal
    (0x7FF0_0000_2000_0001, 0x7FC0_0001), // signalling NaN: quieted, top payload bits kept
    (0xFFF8_0000_0000_0000, 0xFFC0_0000), // quiet NaN, negative
    (0x7FF7_FFFF_FFFF_FFFF, 0x7FFF_FFFF), // signalling NaN, full payload: low 29 bits dropped
];

#[test]
fn f64_known_values_round_to_nearest_even() {
    let src: Vec<u8> = F64_CASES.iter().flat_map(|c| c.0.to_le_bytes()).collect();
    let (r, f) = run(&F64, &src);
    let want: Vec<u32> = F64_CASES.iter().map(|c| c.1).collect();
    assert_eq!(r, want);
    assert_eq!(f, want);
    // Many copies, so that the vectorized chunks (not only the tail) see every case.
    let many: Vec<u8> = src.repeat(40);
    let (r, f) = run(&F64, &many);
    assert_eq!(r, want.repeat(40));
    assert_eq!(f, want.repeat(40));
    for (bits, want) in F64_CASES {
        assert_eq!(f64_bits_to_f32(bits).to_bits(), want, "{bits:#018x}");
    }
}

/// The hardware's own conversion (what C's `(float)` of a double compiles to), kept from
/// being folded at compile time.
fn hardware_f64_to_f32(bits: u64) -> u32 {
    (std::hint::black_box(f64::from_bits(bits)) as f32).to_bits()
}

#[test]
fn f64_reference_is_the_hardware_conversion() {
    // On x86-64 (`cvtsd2ss`) and ARM64 (`fcvt`, default-NaN mode off) the cast gives the same
    // bits as the reference, NaNs included; elsewhere compare the non-NaN values only.
    let nan_bits_match = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut patterns: Vec<u64> = F64_CASES.iter().map(|c| c.0).collect();
    for _ in 0..200_000 {
        // xorshift64*, with exponents pulled near f32's range half of the time.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let bits = if r & 1 == 0 {
            let exp = 1023 - 160 + (r >> 1) % 330; // 2^-160 .. 2^170
            (r & 0x800F_FFFF_FFFF_FFFF) | (exp << 52)
        } else {
            r
        };
        patterns.push(bits);
    }
    for bits in patterns {
        let is_nan = f64::from_bits(bits).is_nan();
        if is_nan && !nan_bits_match {
            continue;
        }
        assert_eq!(
            f64_bits_to_f32(bits).to_bits(),
            hardware_f64_to_f32(bits),
            "{bits:#018x}"
        );
    }
}

#[test]
fn f64_dispatched_and_baseline_fast_paths_agree() {
    // Whole chunks only: the baseline loop leaves a tail to the caller.
    let src = quant_core::random_bytes(CHUNK * 8 * 9, 28);
    let (r, f) = quant_core::conformance::paths(&F64, Some(f64_fast_baseline), &src);
    assert_eq!(r, f);
}

#[test]
fn identity_and_geometry() {
    assert_eq!(F32.ggml_type(), GgmlType(0));
    assert_eq!(F16.ggml_type(), GgmlType(1));
    assert_eq!(BF16.ggml_type(), GgmlType(30));
    assert_eq!(F64.ggml_type(), GgmlType(28));
    for f in [&F32 as &dyn QuantFormat, &F16, &BF16, &F64] {
        assert_eq!(Some(f.geometry()), f.ggml_type().geometry(), "{}", f.name());
        assert_eq!(f.ggml_type().name(), Some(f.name()));
        assert!(f.kernel().is_none());
        assert!(f.layout_doc().contains(f.name()));
    }
}

#[test]
fn integer_types_are_not_formats() {
    let reg = quant_core::registry();
    for ty in [GgmlType::I8, GgmlType::I16, GgmlType::I32, GgmlType::I64] {
        assert!(ty.is_integer());
        assert!(reg.get(ty).is_err(), "{ty} must not be registered");
    }
}

#[test]
fn registered() {
    let reg = quant_core::registry();
    reg.validate().unwrap();
    for (ty, name) in [
        (GgmlType::F32, "F32"),
        (GgmlType::F16, "F16"),
        (GgmlType::BF16, "BF16"),
        (GgmlType::F64, "F64"),
    ] {
        assert_eq!(reg.get(ty).unwrap().name(), name);
    }
}

#[test]
fn meets_the_format_contract() {
    for f in [&F32 as &'static dyn QuantFormat, &F16, &BF16, &F64] {
        quant_core::conformance::check_contract(f);
    }
}

#[test]
fn docs_page_carries_the_layout() {
    let page = include_str!("../../../docs/formats/float.md");
    assert!(
        page.contains(LAYOUT_DOC.trim()),
        "docs/formats/float.md is out of date"
    );
}

proptest! {
    #[test]
    fn fast_equals_reference(src in proptest::collection::vec(any::<u8>(), 0..4200)) {
        for f in [&F32 as &dyn QuantFormat, &F16, &BF16, &F64] {
            let (r, fa) = run(f, &src);
            prop_assert_eq!(r, fa, "{}", f.name());
        }
    }
}
