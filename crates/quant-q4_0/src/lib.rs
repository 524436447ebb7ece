#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q4_0Format`] implements [`quant_core::QuantFormat`]; its instance [`Q4_0`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on whole blocks held in fixed-size arrays so that LLVM vectorizes it, and gives the same bits.
//! The GPU kernels are in `kernel.hip` (see [`QuantFormat::kernel`](quant_core::QuantFormat::kernel)).
#![warn(missing_docs)]

mod kernel;

use quant_core::cpu::f16_le;
use quant_core::GgmlType;

/// Elements per block (ggml's `QK4_0`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: an f16 scale and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 18;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

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

quant_core::define_format! {
    /// ggml's Q4_0 format (type 2): blocks of 32 four-bit quants sharing one f16 scale.
    pub struct Q4_0Format;
    /// The registered [`Q4_0Format`] instance.
    pub static Q4_0;
    ty: GgmlType::Q4_0, name: "Q4_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&kernel::KERNEL), f16_scales: &[0],
}

#[cfg(test)]
mod tests;
