//! Deterministic pseudo-random bytes for benchmarks and tests.

/// `len` pseudo-random bytes from `seed` (xorshift64*): deterministic, never all zeros, and as
/// blocks of a format they hit every bit pattern of its scales (NaN, Inf and subnormal f16
/// scales included), which is what benchmarks and property tests of dequantizers want.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Makes a finite, normal f16 of a realistic magnitude from random bits: sign and mantissa
/// kept, exponent forced into 4..=11, so |x| lies in [2^-11, 2^-3) (about 4.9e-4 to 0.125), the
/// range of real block scales. What [`crate::QuantFormat::make_scales_finite`] writes.
pub const fn finite_f16(bits: u16) -> u16 {
    (bits & 0x83FF) | ((bits & 0x1C00) + 0x1000)
}

#[cfg(test)]
mod tests {
    use super::{finite_f16, random_bytes};

    #[test]
    fn finite_f16_is_finite_normal_and_keeps_sign_and_mantissa() {
        for bits in 0..=u16::MAX {
            let f = half::f16::from_bits(finite_f16(bits)).to_f32();
            assert!(
                f.is_normal() && (4.8e-4..0.126).contains(&f.abs()),
                "{bits:#x}: {f}"
            );
            assert_eq!(finite_f16(bits) & 0x83FF, bits & 0x83FF);
        }
    }

    #[test]
    fn deterministic_and_not_constant() {
        let a = random_bytes(1000, 7);
        assert_eq!(a, random_bytes(1000, 7));
        assert_ne!(a, random_bytes(1000, 8));
        assert!(a.iter().any(|&b| b != a[0]));
        assert_eq!(random_bytes(13, 1).len(), 13);
    }
}
