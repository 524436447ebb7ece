//! Random tensor bytes with finite scales.
//!
//! Random bytes make random f16 scales, and about one in 32 f16 bit patterns is an infinity or
//! a NaN, which would make the synthetic weights useless for anything but a pure copy test. So
//! a quantized tensor's random blocks go through its format's
//! [`QuantFormat::make_scales_finite`](quant_core::QuantFormat::make_scales_finite), found in
//! the [registry](quant_core::registry()): where a format keeps its scales is known to its own
//! crate only. This crate links no format crate; whoever links them (the `quantforge` facade,
//! the CLI) fills the registry, and a quantized type that no linked format handles is refused.
//! F16 and F32 tensors are not blocks with scales: every element is made finite here.

use quant_core::{GgmlType, QuantFormat};

/// The registered format that makes blocks of `ty` finite: a linked quantized format.
fn block_format(ty: GgmlType) -> Option<&'static dyn QuantFormat> {
    quant_core::lookup(ty).filter(|f| f.geometry().is_quantized())
}

/// Whether [`fill_tensor_chunk`] can make data of this type: F32, F16, and every quantized
/// type whose format is linked into the registry (it knows where its scales are).
pub fn supported_type(ty: GgmlType) -> bool {
    ty == GgmlType::F32 || ty == GgmlType::F16 || block_format(ty).is_some()
}

/// Makes a finite, normal f16 from random bits in each of the four 16-bit lanes of a `u64`:
/// [`quant_core::finite_f16`] lane by lane, in one go (no carry crosses a lane: the largest
/// exponent field, 11 << 10, stays below the sign bit). |x| lies in [2^-11, 2^-3).
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

/// Fills `buf`, a whole number of blocks of `ty`, with random data whose values are all
/// finite: for a quantized type, random bytes, then the registered format's
/// [`make_scales_finite`](quant_core::QuantFormat::make_scales_finite) (its f16 scales get
/// |d| in about [4.9e-4, 0.125)); for F16, every element finite (the same magnitudes); for F32,
/// every element in [1, 2). The bytes depend on `seed`, `buf.len()` and the format's fix-up
/// only. Returns `false`, leaving `buf` unspecified, for a type [`supported_type`] rejects;
/// `buf` is assumed to hold whole blocks (a trailing partial block gets random bytes only).
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
    let Some(format) = block_format(ty) else {
        return false;
    };
    fill_words(buf, seed, |x| x);
    format.make_scales_finite(buf);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    use crate::linked_formats::{require, unlinked_quantized_type, REQUIRED};

    /// Every linked quantized format (the dev-dependencies link every format crate; some may
    /// still be stubs that register nothing), after checking that [`REQUIRED`] are there.
    fn quantized_formats() -> Vec<&'static dyn QuantFormat> {
        require();
        quant_core::registry()
            .iter()
            .filter(|f| f.geometry().is_quantized())
            .collect()
    }

    fn chunk(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; blocks * ty.geometry().unwrap().block_bytes];
        assert!(fill_tensor_chunk(ty, &mut v, seed), "{ty}");
        v
    }

    #[test]
    fn f16_lanes_are_made_finite_as_quant_core_does() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let y = finite_f16x4(x);
            for lane in 0..4 {
                let h = (x >> (16 * lane)) as u16;
                assert_eq!(
                    (y >> (16 * lane)) as u16,
                    quant_core::finite_f16(h),
                    "{x:#x}"
                );
            }
        }
    }

    #[test]
    fn supported_types_are_the_registered_formats() {
        let formats = quantized_formats();
        assert!(supported_type(GgmlType::F32) && supported_type(GgmlType::F16));
        for f in &formats {
            assert!(supported_type(f.ggml_type()), "{}", f.name());
        }
        // Linked but not blocks: BF16 (quant-float) has no synthesis here.
        assert!(quant_core::lookup(GgmlType::BF16).is_some());
        assert!(!supported_type(GgmlType::BF16));
        // A quantized type that no linked format handles is refused, and not filled.
        let unlinked = unlinked_quantized_type();
        assert!(!supported_type(unlinked), "{unlinked}");
        assert!(!fill_tensor_chunk(unlinked, &mut [0u8; 1024], 1));
    }

    #[test]
    fn every_registered_format_dequantizes_to_finite_values() {
        let reg = quant_core::registry();
        let mut types: Vec<GgmlType> = quantized_formats().iter().map(|f| f.ggml_type()).collect();
        types.extend([GgmlType::F16, GgmlType::F32]);
        for ty in types {
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
        for ty in REQUIRED.into_iter().chain([GgmlType::F16]) {
            let format = reg.lookup(ty).unwrap();
            let g = format.geometry();
            let n_blocks = (1 << 16) / g.block_elems;
            let raw = quant_core::random_bytes(n_blocks * g.block_bytes, 3);
            let mut out = vec![0f32; n_blocks * g.block_elems];
            format.dequantize_reference(&raw, &mut out);
            assert!(out.iter().any(|x| !x.is_finite()), "{ty}");
        }
    }

    #[test]
    fn f16_scales_are_realistic_and_random() {
        for format in quantized_formats() {
            let g = format.geometry();
            let data = chunk(format.ggml_type(), 4096, 11);
            let mut signs = [0usize; 2];
            for block in data.chunks_exact(g.block_bytes) {
                for &off in format.f16_scale_offsets() {
                    let d = f16::from_le_bytes([block[off], block[off + 1]]).to_f32();
                    assert!(d.is_normal(), "{}: {d}", format.name());
                    assert!((4.8e-4..0.126).contains(&d.abs()), "{}: {d}", format.name());
                    signs[usize::from(d < 0.0)] += 1;
                }
            }
            // Random, not constant: both signs occur (where the format has f16 scales).
            let n = format.f16_scale_offsets().len() * 4096;
            assert!(
                n == 0 || (signs[0] > n / 4 && signs[1] > n / 4),
                "{}: {signs:?}",
                format.name()
            );
        }
    }

    #[test]
    fn deterministic_per_seed_and_length() {
        let a = chunk(GgmlType::Q4_K, 100, 5);
        assert_eq!(a, chunk(GgmlType::Q4_K, 100, 5));
        assert_ne!(a, chunk(GgmlType::Q4_K, 100, 6));
        // Uneven lengths (tail handling) are filled too.
        let mut v = [0u8; 45];
        assert!(fill_tensor_chunk(GgmlType::F32, &mut v[..44], 1));
        assert!(v[40..44].iter().any(|&b| b != 0) && v[44] == 0);
        assert_ne!(chunk_seed(1, 2, 3), chunk_seed(1, 3, 2));
    }
}
