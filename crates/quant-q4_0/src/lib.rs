#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q4_0Format`] implements [`quant_core::QuantFormat`]; its instance [`Q4_0`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on whole blocks held in fixed-size arrays so that LLVM vectorizes it, and gives the same bits.
//! The GPU kernels are in `kernel.hip` (see [`QuantFormat::kernel`]).
#![warn(missing_docs)]

mod kernel;

use quant_core::{BlockGeometry, GgmlType, KernelSpec, QuantFormat};

/// Elements per block (ggml's `QK4_0`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: an f16 scale and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 18;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// ggml's Q4_0 format (type 2): blocks of 32 four-bit quants sharing one f16 scale.
#[derive(Debug, Clone, Copy, Default)]
pub struct Q4_0Format;

/// The registered [`Q4_0Format`] instance.
pub static Q4_0: Q4_0Format = Q4_0Format;

quant_core::register_format!(Q4_0);

/// ggml's f16 -> f32 (exact; signalling NaNs quieted like F16C's `vcvtph2ps`).
#[inline]
fn f16_le(lo: u8, hi: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// The reference: ggml's `dequantize_row_q4_0`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    const QK: usize = BLOCK_ELEMS;
    for (x, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_le(x[0], x[1]);
        let qs = &x[2..];
        for j in 0..QK / 2 {
            let x0: i32 = (qs[j] & 0x0F) as i32 - 8;
            let x1: i32 = (qs[j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// One block of the fast path. Fixed-size arrays and constant trip counts: no bounds checks,
/// and both 16-element halves become vector code. Same operations as [`reference`].
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let mut lo = [0f32; 16];
    let mut hi = [0f32; 16];
    for j in 0..16 {
        let q = x[2 + j];
        lo[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        hi[j] = ((q >> 4) as i32 - 8) as f32 * d;
    }
    y[..16].copy_from_slice(&lo);
    y[16..].copy_from_slice(&hi);
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

impl QuantFormat for Q4_0Format {
    fn ggml_type(&self) -> GgmlType {
        GgmlType::Q4_0
    }
    fn name(&self) -> &'static str {
        "Q4_0"
    }
    fn geometry(&self) -> BlockGeometry {
        BlockGeometry {
            block_elems: BLOCK_ELEMS,
            block_bytes: BLOCK_BYTES,
        }
    }
    fn layout_doc(&self) -> &'static str {
        LAYOUT_DOC
    }
    fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
        reference(src, dst)
    }
    fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
        fast(src, dst)
    }
    fn kernel(&self) -> Option<&'static KernelSpec> {
        Some(&kernel::KERNEL)
    }
}

#[cfg(test)]
mod tests;
