//! Checked CPU entry points: length validation, multi-core spreading of a format's fast path,
//! and rounding of f32 results to f16 / bf16.

use rayon::prelude::*;

use crate::{CoreError, OutputDType, QuantFormat};

/// ggml's f16 → f32 of a little-endian scale field: exact for every input (subnormals, Inf);
/// a signalling NaN is quieted, keeping its payload, as x86's F16C `vcvtph2ps` does.
///
/// Integer operations only, so that it inlines into a format's block loop (the `half` crate's
/// conversion is an out-of-line call behind a run-time CPU check, which cost a 32-element block
/// format about half its fast-path time).
#[inline(always)]
pub fn f16_le(lo: u8, hi: u8) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([lo, hi]))
}

/// The conversion of [`f16_le`] on the f16's bits.
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1F;
    let man = h & 0x3FF;
    if exp == 0x1F {
        // Inf, or NaN made quiet with its payload kept.
        let quiet = if man != 0 { 0x0040_0000 } else { 0 };
        f32::from_bits(sign | 0x7F80_0000 | (man << 13) | quiet)
    } else if exp != 0 {
        f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
    } else {
        // Zero or subnormal: man * 2^-24, exact in f32.
        let v = man as f32 * f32::from_bits(0x3380_0000);
        f32::from_bits(sign | v.to_bits())
    }
}

/// `a + b` with x86's NaN rule made explicit: when `a` is NaN the result is `a` (SSE/AVX return
/// the first operand's NaN). LLVM treats float addition as commutative and may swap the
/// operands in a vectorized loop, which would make a NaN `b` win over a NaN `a`; this keeps
/// ggml's `x*d + m` bit for bit whatever the compiler does. Only for an `a` that is quiet (a
/// product): a signalling `a` would be quieted by x86.
#[inline(always)]
pub fn add_x86(a: f32, b: f32) -> f32 {
    let s = a + b;
    if a.is_nan() {
        a
    } else {
        s
    }
}

/// `-v` when `neg`, else `v`: the i-quants' `* (sign ? -1.f : 1.f)` as ggml's compiled code
/// applies it, a sign flip (a NaN's sign flips too, which a multiply by -1 would not do on x86;
/// ggml's golden output shows the flip).
#[inline(always)]
pub fn neg_if(v: f32, neg: bool) -> f32 {
    if neg {
        -v
    } else {
        v
    }
}

/// Sixteen runs of 16 values, the fast-path form of [`neg_if`]: `y[16h + k] = db[h] *
/// q[16h + k]` with its sign bit flipped where bit `k` of `sw[h]` is set (integer masks, no
/// branches, so that LLVM vectorizes it).
#[inline(always)]
pub fn scaled_signed_16x16(q: &[u8; 256], db: &[f32; 16], sw: &[u32; 16], y: &mut [f32; 256]) {
    for h in 0..16 {
        let (dh, s) = (db[h], sw[h]);
        for k in 0..16 {
            let v = dh * q[16 * h + k] as f32;
            y[16 * h + k] = f32::from_bits(v.to_bits() ^ (((s >> k) & 1) << 31));
        }
    }
}

/// Which CPU implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuPath {
    /// The format's reference, single-threaded: ggml's code, literally.
    Reference,
    /// The format's fast path, spread over all cores with rayon.
    Fast,
}

/// Elements handed to one rayon task (rounded to whole blocks): large enough to amortise
/// scheduling, small enough to balance and to stay in cache.
const ELEMS_PER_TASK: usize = 1 << 16;

/// Number of elements `bytes` bytes of `format` hold, or an error if they are not whole blocks.
pub fn elements_in(format: &dyn QuantFormat, bytes: usize) -> Result<usize, CoreError> {
    let g = format.geometry();
    if bytes % g.block_bytes != 0 {
        return Err(length_error(format, bytes, 0));
    }
    (bytes / g.block_bytes)
        .checked_mul(g.block_elems)
        .ok_or_else(|| length_error(format, bytes, 0))
}

fn length_error(format: &dyn QuantFormat, bytes: usize, elems: usize) -> CoreError {
    let g = format.geometry();
    CoreError::LengthMismatch {
        format: format.name(),
        bytes,
        elems,
        block_bytes: g.block_bytes,
        block_elems: g.block_elems,
    }
}

/// Checks that `src` holds exactly the whole blocks that `dst_elems` elements need.
pub fn check_lengths(
    format: &dyn QuantFormat,
    src_bytes: usize,
    dst_elems: usize,
) -> Result<(), CoreError> {
    let g = format.geometry();
    let ok = dst_elems % g.block_elems == 0
        && (dst_elems / g.block_elems).checked_mul(g.block_bytes) == Some(src_bytes);
    if ok {
        Ok(())
    } else {
        Err(length_error(format, src_bytes, dst_elems))
    }
}

/// Dequantizes `src` into `dst` (f32) with the chosen path, after checking the lengths.
pub fn dequantize(
    format: &dyn QuantFormat,
    src: &[u8],
    dst: &mut [f32],
    path: CpuPath,
) -> Result<(), CoreError> {
    check_lengths(format, src.len(), dst.len())?;
    match path {
        CpuPath::Reference => format.dequantize_reference(src, dst),
        CpuPath::Fast => {
            let g = format.geometry();
            let blocks_per_task = (ELEMS_PER_TASK / g.block_elems).max(1);
            let elems_per_task = blocks_per_task * g.block_elems;
            let bytes_per_task = blocks_per_task * g.block_bytes;
            dst.par_chunks_mut(elems_per_task)
                .zip(src.par_chunks(bytes_per_task))
                .for_each(|(d, s)| format.dequantize_fast(s, d));
        }
    }
    Ok(())
}

/// Dequantizes into a new vector of f32.
pub fn dequantize_to_vec(
    format: &dyn QuantFormat,
    src: &[u8],
    path: CpuPath,
) -> Result<Vec<f32>, CoreError> {
    let n = elements_in(format, src.len())?;
    let mut out = vec![0f32; n];
    dequantize(format, src, &mut out, path)?;
    Ok(out)
}

/// Dequantizes `src` (whole blocks of `format`) by `path` straight into `dst` as the
/// little-endian bytes of `dtype` values, on all cores, a task's values at a time: no buffer of
/// the whole tensor's f32 values. `dst` must hold exactly the values' bytes.
pub fn dequantize_into_bytes(
    format: &dyn QuantFormat,
    src: &[u8],
    dst: &mut [u8],
    dtype: OutputDType,
    path: CpuPath,
) -> Result<(), CoreError> {
    let n = elements_in(format, src.len())?;
    if n.checked_mul(dtype.size()) != Some(dst.len()) {
        return Err(length_error(format, src.len(), dst.len() / dtype.size()));
    }
    let g = format.geometry();
    let blocks_per_task = (ELEMS_PER_TASK / g.block_elems).max(1);
    let (elems, bytes) = (
        blocks_per_task * g.block_elems,
        blocks_per_task * g.block_bytes,
    );
    let run = |(d, s): (&mut [u8], &[u8])| {
        let mut values = vec![0f32; d.len() / dtype.size()];
        match path {
            CpuPath::Reference => format.dequantize_reference(s, &mut values),
            CpuPath::Fast => format.dequantize_fast(s, &mut values),
        }
        d.copy_from_slice(&encode_as(&values, dtype));
    };
    let out_bytes = elems * dtype.size();
    match path {
        // The reference is single-threaded by definition.
        CpuPath::Reference => dst
            .chunks_mut(out_bytes)
            .zip(src.chunks(bytes))
            .for_each(run),
        CpuPath::Fast => dst
            .par_chunks_mut(out_bytes)
            .zip(src.par_chunks(bytes))
            .for_each(run),
    }
    Ok(())
}

/// Values in host memory as a requested output type holds them.
#[derive(Clone, Debug, PartialEq)]
pub enum HostValues {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 or bf16 bit patterns.
    Bits16(Vec<u16>),
}

impl HostValues {
    /// Rounds `values` to `dtype`: f32 kept as they are (no copy), f16 and bf16 rounded to
    /// nearest-even, as [`encode_as`] rounds, on all cores.
    pub fn round(values: Vec<f32>, dtype: OutputDType) -> HostValues {
        const CHUNK: usize = 1 << 16;
        let bits = |f: fn(f32) -> u16| {
            let mut out = vec![0u16; values.len()];
            out.par_chunks_mut(CHUNK)
                .zip(values.par_chunks(CHUNK))
                .for_each(|(o, v)| o.iter_mut().zip(v).for_each(|(o, &v)| *o = f(v)));
            HostValues::Bits16(out)
        };
        match dtype {
            OutputDType::F32 => HostValues::F32(values),
            OutputDType::F16 => bits(|v| half::f16::from_f32(v).to_bits()),
            OutputDType::Bf16 => bits(|v| half::bf16::from_f32(v).to_bits()),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            HostValues::F32(v) => v.len(),
            HostValues::Bits16(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values' little-endian bytes (a copy).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            HostValues::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostValues::Bits16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Rounds f32 values to `dtype` and returns their little-endian bytes: f32 unchanged, f16 and
/// bf16 rounded to nearest-even (what a device kernel producing that type must match).
pub fn encode_as(values: &[f32], dtype: OutputDType) -> Vec<u8> {
    let mut out = vec![0u8; values.len() * dtype.size()];
    const CHUNK: usize = 1 << 16;
    match dtype {
        OutputDType::F32 => out
            .par_chunks_mut(CHUNK * 4)
            .zip(values.par_chunks(CHUNK))
            .for_each(|(o, v)| {
                for (o, v) in o.chunks_exact_mut(4).zip(v) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }),
        OutputDType::F16 => out
            .par_chunks_mut(CHUNK * 2)
            .zip(values.par_chunks(CHUNK))
            .for_each(|(o, v)| {
                for (o, v) in o.chunks_exact_mut(2).zip(v) {
                    o.copy_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
                }
            }),
        OutputDType::Bf16 => out
            .par_chunks_mut(CHUNK * 2)
            .zip(values.par_chunks(CHUNK))
            .for_each(|(o, v)| {
                for (o, v) in o.chunks_exact_mut(2).zip(v) {
                    o.copy_from_slice(&half::bf16::from_f32(*v).to_bits().to_le_bytes());
                }
            }),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{encode_as, f16_bits_to_f32, HostValues};
    use crate::OutputDType;

    #[test]
    fn rounded_host_values_have_the_bytes_of_encode_as() {
        let v: Vec<f32> = (0..70_000)
            .map(|i| f32::from_bits((i as u32).wrapping_mul(2_654_435_761)))
            .collect();
        for d in OutputDType::ALL {
            let h = HostValues::round(v.clone(), d);
            assert_eq!(h.len(), v.len());
            assert_eq!(h.to_le_bytes(), encode_as(&v, d), "{d}");
        }
    }

    #[test]
    fn f16_conversion_is_exact_and_quiets_nans_like_f16c() {
        for h in 0..=u16::MAX {
            let got = f16_bits_to_f32(h).to_bits();
            let want = half::f16::from_bits(h).to_f32();
            if want.is_nan() {
                let payload = u32::from(h & 0x3FF) << 13;
                let sign = u32::from(h & 0x8000) << 16;
                assert_eq!(got, sign | 0x7FC0_0000 | payload, "{h:#06x}");
            } else {
                assert_eq!(got, want.to_bits(), "{h:#06x}");
            }
        }
    }
}
