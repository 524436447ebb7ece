#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! Four formats, each a unit struct implementing [`quant_core::QuantFormat`] with a `'static`
//! instance registered in quant-core's registry: [`F32`], [`F16`], [`BF16`] and [`F64`]. None has
//! GPU kernels of its own ([`QuantFormat::kernel`] is `None`): loaders convert them on the host
//! and upload the values.
//!
//! ggml's integer types (I8, I16, I32, I64) are deliberately not formats: they hold indices or
//! ids, not weights, and loaders keep them as they are ([`GgmlType::is_integer`]).
#![warn(missing_docs)]

use half::f16;
use half::slice::HalfFloatSliceExt;
use quant_core::{BlockGeometry, GgmlType, QuantFormat};

/// The layout page shared by the three formats (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// Elements converted per step of the fast paths (a stack buffer of this many values).
const CHUNK: usize = 256;

/// ggml's `F32` (type 0): plain little-endian binary32, copied bit for bit.
#[derive(Debug, Clone, Copy, Default)]
pub struct F32Format;

/// ggml's `F16` (type 1): little-endian IEEE binary16.
#[derive(Debug, Clone, Copy, Default)]
pub struct F16Format;

/// ggml's `BF16` (type 30): little-endian bfloat16.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bf16Format;

/// ggml's `F64` (type 28): little-endian IEEE binary64, rounded to f32.
#[derive(Debug, Clone, Copy, Default)]
pub struct F64Format;

/// The registered [`F32Format`] instance.
pub static F32: F32Format = F32Format;
/// The registered [`F16Format`] instance.
pub static F16: F16Format = F16Format;
/// The registered [`Bf16Format`] instance.
pub static BF16: Bf16Format = Bf16Format;
/// The registered [`F64Format`] instance.
pub static F64: F64Format = F64Format;

quant_core::register_format!(F32);
quant_core::register_format!(F16);
quant_core::register_format!(BF16);
quant_core::register_format!(F64);

/// Converts one F16 value (its bits) to f32 exactly as ggml does: exact for finite values, a
/// signalling NaN is quieted, sign and payload are kept.
#[inline]
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// Converts one BF16 value (its bits) to f32 as ggml does: `bits << 16`.
#[inline]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// The f32 a NaN of binary64 bits `bits` becomes: quieted (bit 22 set), sign kept, and the top
/// 22 bits of the payload below the quiet bit kept (the low 29 dropped). This is what x86's
/// `cvtsd2ss` (C's `(float)` of a `double` there) and ARM's `fcvt` give.
#[inline(always)]
fn f64_nan_bits(bits: u64) -> u32 {
    let sign = (bits >> 32) as u32 & 0x8000_0000;
    sign | 0x7FC0_0000 | ((bits >> 29) as u32 & 0x003F_FFFF)
}

/// Converts one F64 value (its bits) to f32: IEEE rounding to nearest, ties to even (values
/// beyond f32's range become infinities, tiny ones subnormals or zeros of their sign); a NaN is
/// quieted and keeps its sign and the top bits of its payload ([`F64Format`]'s page says why).
#[inline]
pub fn f64_bits_to_f32(bits: u64) -> f32 {
    let x = f64::from_bits(bits);
    if x.is_nan() {
        f32::from_bits(f64_nan_bits(bits))
    } else {
        x as f32
    }
}

/// [`f64_bits_to_f32`] without a branch (a select), so that loops of it vectorize.
#[inline(always)]
fn f64_bits_to_f32_select(bits: u64) -> f32 {
    let rounded = (f64::from_bits(bits) as f32).to_bits();
    let is_nan = bits & 0x7FFF_FFFF_FFFF_FFFF > 0x7FF0_0000_0000_0000;
    f32::from_bits(if is_nan { f64_nan_bits(bits) } else { rounded })
}

/// One chunk of [`F64Format`]'s fast path: `CHUNK` values, branch-free.
#[inline(always)]
fn f64_chunk(src: &[u8; CHUNK * 8], dst: &mut [f32; CHUNK]) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(8)) {
        // Whole 8-byte loads (`first_chunk` always succeeds on these chunks; byte by byte,
        // LLVM gathers the bytes one at a time).
        if let Some(x) = x.first_chunk::<8>() {
            *y = f64_bits_to_f32_select(u64::from_le_bytes(*x));
        }
    }
}

quant_core::block_fast_path!(f64_fast, f64_fast_baseline, f64_chunk, CHUNK * 8, CHUNK);

/// The elements after the last whole chunk of a fast path, through `format`'s reference loop.
fn tail(format: &dyn QuantFormat, src: &[u8], dst: &mut [f32], elem_bytes: usize) {
    let done = dst.len() / CHUNK * CHUNK;
    let rest = src.get(done * elem_bytes..).unwrap_or(&[]);
    format.dequantize_reference(rest, dst.get_mut(done..).unwrap_or(&mut []));
}

impl QuantFormat for F32Format {
    fn ggml_type(&self) -> GgmlType {
        GgmlType::F32
    }
    fn name(&self) -> &'static str {
        "F32"
    }
    fn geometry(&self) -> BlockGeometry {
        BlockGeometry {
            block_elems: 1,
            block_bytes: 4,
        }
    }
    fn layout_doc(&self) -> &'static str {
        LAYOUT_DOC
    }
    fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
        for (y, x) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *y = f32::from_bits(u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
        }
    }
    fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
        // Fixed-size chunks: the inner loop is a straight copy of CHUNK * 4 bytes.
        for (y, x) in dst.chunks_exact_mut(CHUNK).zip(src.chunks_exact(CHUNK * 4)) {
            for (y, x) in y.iter_mut().zip(x.chunks_exact(4)) {
                *y = f32::from_bits(u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
            }
        }
        tail(self, src, dst, 4);
    }
}

impl QuantFormat for F16Format {
    fn ggml_type(&self) -> GgmlType {
        GgmlType::F16
    }
    fn name(&self) -> &'static str {
        "F16"
    }
    fn geometry(&self) -> BlockGeometry {
        BlockGeometry {
            block_elems: 1,
            block_bytes: 2,
        }
    }
    fn layout_doc(&self) -> &'static str {
        LAYOUT_DOC
    }
    fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
        // ggml_fp16_to_fp32_row: one conversion per element.
        for (y, x) in dst.iter_mut().zip(src.chunks_exact(2)) {
            *y = f16_bits_to_f32(u16::from_le_bytes([x[0], x[1]]));
        }
    }
    fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
        // Gather CHUNK values into an aligned f16 buffer, then let `half` convert the slice
        // (F16C `vcvtph2ps`, eight at a time, where the CPU has it: the same instruction as
        // ggml's, so the same bits, quieted NaNs included).
        let mut buf = [f16::ZERO; CHUNK];
        for (y, x) in dst.chunks_exact_mut(CHUNK).zip(src.chunks_exact(CHUNK * 2)) {
            for (b, x) in buf.iter_mut().zip(x.chunks_exact(2)) {
                *b = f16::from_bits(u16::from_le_bytes([x[0], x[1]]));
            }
            buf.convert_to_f32_slice(y);
        }
        tail(self, src, dst, 2);
    }
}

impl QuantFormat for Bf16Format {
    fn ggml_type(&self) -> GgmlType {
        GgmlType::BF16
    }
    fn name(&self) -> &'static str {
        "BF16"
    }
    fn geometry(&self) -> BlockGeometry {
        BlockGeometry {
            block_elems: 1,
            block_bytes: 2,
        }
    }
    fn layout_doc(&self) -> &'static str {
        LAYOUT_DOC
    }
    fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
        // ggml_bf16_to_fp32_row: bits << 16. (`half::bf16::to_f32` would quiet signalling
        // NaNs, which ggml does not.)
        for (y, x) in dst.iter_mut().zip(src.chunks_exact(2)) {
            *y = bf16_bits_to_f32(u16::from_le_bytes([x[0], x[1]]));
        }
    }
    fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
        for (y, x) in dst.chunks_exact_mut(CHUNK).zip(src.chunks_exact(CHUNK * 2)) {
            for (y, x) in y.iter_mut().zip(x.chunks_exact(2)) {
                *y = bf16_bits_to_f32(u16::from_le_bytes([x[0], x[1]]));
            }
        }
        tail(self, src, dst, 2);
    }
}

impl QuantFormat for F64Format {
    fn ggml_type(&self) -> GgmlType {
        GgmlType::F64
    }
    fn name(&self) -> &'static str {
        "F64"
    }
    fn geometry(&self) -> BlockGeometry {
        BlockGeometry {
            block_elems: 1,
            block_bytes: 8,
        }
    }
    fn layout_doc(&self) -> &'static str {
        LAYOUT_DOC
    }
    fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
        // ggml has no F64 -> F32 row conversion (its type traits give F64 no `to_float`);
        // quantforge defines it as C's `(float)` cast of the double: IEEE round to nearest.
        for (y, x) in dst.iter_mut().zip(src.chunks_exact(8)) {
            let bits = u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
            *y = f64_bits_to_f32(bits);
        }
    }
    fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
        // Whole chunks (AVX2's four-wide `vcvtpd2ps` where the CPU has it), then the tail.
        f64_fast(src, dst);
        tail(self, src, dst, 8);
    }
}

#[cfg(test)]
mod tests;
