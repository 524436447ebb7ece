//! Random tensor bytes with finite scales.
//!
//! ## Why a table of scale offsets lives here
//!
//! Random bytes make random f16 scales, and about one in 32 f16 bit patterns is an infinity or
//! a NaN, which would make the synthetic weights useless for anything but a pure copy test. So
//! each block's f16 scale fields are overwritten with finite values of a realistic magnitude.
//! That needs to know where a format keeps its scales, which is format knowledge outside the
//! format crates. `quant_core::QuantFormat` has no such entry (and it is a contract this crate
//! does not own), and linking the format crates into a generator would tie it to the formats
//! linked. Hence [`SCALE_FIELDS`], a small table keyed by [`GgmlType`] and checked by tests
//! against the format crates' own CPU dequantization (all values finite).

use quant_core::GgmlType;

/// The byte offsets, within one block, of each block type's f16 scale fields (ggml's block
/// structs): Q4_0 `d`; Q5_0 `d`; Q8_0 `d`; Q4_K `d`, `dmin`; Q6_K `d` (after `ql[128]`,
/// `qh[64]`, `scales[16]`). Q4_K's packed 6-bit scales and Q6_K's int8 scales are integers,
/// finite whatever their bits, and stay random. F16 and F32 tensors are all scale, so to speak:
/// every element is made finite (see [`fill_tensor_chunk`]).
pub const SCALE_FIELDS: &[(GgmlType, &[usize])] = &[
    (GgmlType::Q4_0, &[0]),
    (GgmlType::Q5_0, &[0]),
    (GgmlType::Q8_0, &[0]),
    (GgmlType::Q4_K, &[0, 2]),
    (GgmlType::Q6_K, &[208]),
];

/// Whether [`fill_tensor_chunk`] can make data of this type: F32, F16 and the types of
/// [`SCALE_FIELDS`].
pub fn supported_type(ty: GgmlType) -> bool {
    ty == GgmlType::F32 || ty == GgmlType::F16 || scale_fields(ty).is_some()
}

fn scale_fields(ty: GgmlType) -> Option<&'static [usize]> {
    SCALE_FIELDS.iter().find(|(t, _)| *t == ty).map(|(_, f)| *f)
}

/// Makes a finite, normal f16 from random bits: sign and mantissa kept, exponent forced into
/// 4..=11, so |x| lies in [2^-11, 2^-3) (about 4.9e-4 to 0.125), the range of real weights
/// and block scales. Applied to the four 16-bit lanes of a `u64` at once (no carry crosses a
/// lane: the largest exponent field, 11 << 10, stays below the sign bit).
#[inline(always)]
fn finite_f16x4(x: u64) -> u64 {
    const KEEP: u64 = 0x83FF_83FF_83FF_83FF;
    const EXP3: u64 = 0x1C00_1C00_1C00_1C00;
    const PLUS4: u64 = 0x1000_1000_1000_1000;
    (x & KEEP) | ((x & EXP3) + PLUS4)
}

/// Makes two positive f32s in [1, 2) from random bits (for norm weights, which sit near 1).
#[inline(always)]
fn norm_f32x2(x: u64) -> u64 {
    (x & 0x007F_FFFF_007F_FFFF) | 0x3F80_0000_3F80_0000
}

/// SplitMix64's output function: turns related seeds into unrelated ones.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of one chunk: depends on the file seed, the tensor's index and the chunk's index
/// only, so the output does not depend on how chunks are spread over threads.
pub(crate) fn chunk_seed(seed: u64, tensor: u64, chunk: u64) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(tensor)) ^ chunk)
}

/// Fills `buf` with xorshift64* output (four independent streams interleaved, for
/// instruction-level parallelism), passing every 64-bit word through `map`.
#[inline(always)]
fn fill_words(buf: &mut [u8], seed: u64, map: impl Fn(u64) -> u64) {
    let mut s = [0u64; 4];
    for (i, x) in s.iter_mut().enumerate() {
        // Never zero: xorshift would stay at zero.
        *x = splitmix64(seed.wrapping_add(i as u64)) | 1;
    }
    let step = |s: &mut u64| {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        map(s.wrapping_mul(0x2545_F491_4F6C_DD1D))
    };
    let mut chunks = buf.chunks_exact_mut(32);
    for c in &mut chunks {
        for (lane, st) in s.iter_mut().enumerate() {
            c[lane * 8..lane * 8 + 8].copy_from_slice(&step(st).to_le_bytes());
        }
    }
    let rest = chunks.into_remainder();
    for (c, st) in rest.chunks_mut(8).zip(s.iter_mut()) {
        let w = step(st).to_le_bytes();
        c.copy_from_slice(&w[..c.len()]);
    }
}

/// Fills `buf`, a whole number of blocks of `ty`, with random data whose scales are finite:
/// random bytes, then each block's f16 scale fields ([`SCALE_FIELDS`]) made finite; for F16,
/// every element finite (|x| in about [4.9e-4, 0.125)); for F32, every element in [1, 2).
/// The bytes depend on `seed` and `buf.len()` only. Returns `false`, leaving `buf` unspecified,
/// for a type [`supported_type`] rejects; `buf` is assumed to hold whole blocks (a trailing
/// partial block gets random bytes only).
pub fn fill_tensor_chunk(ty: GgmlType, buf: &mut [u8], seed: u64) -> bool {
    if ty == GgmlType::F16 {
        fill_words(buf, seed, finite_f16x4);
        // A trailing odd byte cannot happen for whole F16 elements.
        return true;
    }
    if ty == GgmlType::F32 {
        fill_words(buf, seed, norm_f32x2);
        return true;
    }
    let (Some(fields), Some(g)) = (scale_fields(ty), ty.geometry()) else {
        return false;
    };
    fill_words(buf, seed, |x| x);
    for block in buf.chunks_exact_mut(g.block_bytes) {
        for &off in fields {
            let r = u16::from_le_bytes([block[off], block[off + 1]]);
            let f = finite_f16x4(u64::from(r)) as u16;
            block[off..off + 2].copy_from_slice(&f.to_le_bytes());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    // Link the formats so that the registry holds them.
    use quant_float as _;
    use quant_q4_0 as _;
    use quant_q4k as _;
    use quant_q6k as _;

    fn chunk(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; blocks * ty.geometry().unwrap().block_bytes];
        assert!(fill_tensor_chunk(ty, &mut v, seed));
        v
    }

    #[test]
    fn table_matches_block_geometry() {
        for (ty, fields) in SCALE_FIELDS {
            let b = ty.geometry().unwrap().block_bytes;
            for &f in *fields {
                assert!(f + 2 <= b, "{ty}: field at {f} beyond a {b}-byte block");
            }
        }
    }

    #[test]
    fn scale_fields_are_finite_and_realistic() {
        for (ty, fields) in SCALE_FIELDS {
            let b = ty.geometry().unwrap().block_bytes;
            let data = chunk(*ty, 4096, 11);
            let mut signs = [0usize; 2];
            for block in data.chunks_exact(b) {
                for &off in *fields {
                    let d = f16::from_le_bytes([block[off], block[off + 1]]).to_f32();
                    assert!(d.is_finite() && d.is_normal(), "{ty}: {d}");
                    assert!((4.8e-4..0.126).contains(&d.abs()), "{ty}: {d}");
                    signs[usize::from(d < 0.0)] += 1;
                }
            }
            // Random, not constant: both signs occur.
            assert!(signs[0] > 1000 && signs[1] > 1000, "{ty}: {signs:?}");
        }
    }

    #[test]
    fn registry_dequantizes_every_type_to_finite_values() {
        let reg = quant_core::registry();
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::F16,
            GgmlType::F32,
        ] {
            assert!(supported_type(ty));
            let format = reg.lookup(ty).unwrap_or_else(|| panic!("{ty} not linked"));
            let g = format.geometry();
            let n_blocks = (1 << 16) / g.block_elems;
            for seed in [0, 1, u64::MAX] {
                let data = chunk(ty, n_blocks, seed);
                let mut out = vec![0f32; n_blocks * g.block_elems];
                format.dequantize_reference(&data, &mut out);
                let bad = out.iter().position(|x| !x.is_finite());
                assert!(
                    bad.is_none(),
                    "{ty}: element {bad:?} is {:?}",
                    bad.map(|i| out[i])
                );
                // Not all equal: the quants are random.
                assert!(out.iter().any(|&x| x != out[0]), "{ty}");
                if ty == GgmlType::F32 {
                    assert!(out.iter().all(|x| (1.0..2.0).contains(x)));
                }
            }
        }
        // Without the fix-up, random bytes do give non-finite values (so the test can fail).
        let raw = quant_core::random_bytes(1 << 17, 3);
        let mut out = vec![0f32; 1 << 16];
        reg.lookup(GgmlType::F16)
            .unwrap()
            .dequantize_reference(&raw, &mut out);
        assert!(out.iter().any(|x| !x.is_finite()));
    }

    #[test]
    fn deterministic_per_seed_and_length() {
        let a = chunk(GgmlType::Q4_K, 100, 5);
        assert_eq!(a, chunk(GgmlType::Q4_K, 100, 5));
        assert_ne!(a, chunk(GgmlType::Q4_K, 100, 6));
        // Uneven lengths (tail handling) are filled too.
        let mut v = vec![0u8; 45];
        assert!(fill_tensor_chunk(GgmlType::F32, &mut v[..44], 1));
        assert!(v[40..44].iter().any(|&b| b != 0) && v[44] == 0);
        assert!(!fill_tensor_chunk(GgmlType::Q2_K, &mut v, 1));
        assert_ne!(chunk_seed(1, 2, 3), chunk_seed(1, 3, 2));
    }
}
