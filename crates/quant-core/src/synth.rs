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

#[cfg(test)]
mod tests {
    use super::random_bytes;

    #[test]
    fn deterministic_and_not_constant() {
        let a = random_bytes(1000, 7);
        assert_eq!(a, random_bytes(1000, 7));
        assert_ne!(a, random_bytes(1000, 8));
        assert!(a.iter().any(|&b| b != a[0]));
        assert_eq!(random_bytes(13, 1).len(), 13);
    }
}
