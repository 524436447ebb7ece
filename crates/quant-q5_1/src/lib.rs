#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q5_1Format`] implements [`quant_core::QuantFormat`]; its instance [`Q5_1`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on fixed-size blocks that LLVM vectorizes, with the same operations. The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::{add_x86, f16_le};
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK5_1`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: two f16 fields (`d`, `m`), 4 bytes of high bits and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 24;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q5_1", file: "quant-q5_1/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 256,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q5_1 format (type 7): blocks of 32 unsigned five-bit quants sharing an f16 scale
    /// and an f16 offset.
    pub struct Q5_1Format;
    /// The registered [`Q5_1Format`] instance.
    pub static Q5_1;
    ty: GgmlType::Q5_1, name: "Q5_1", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0, 2],
}

/// The reference: ggml's `dequantize_row_q5_1`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    const QK: usize = BLOCK_ELEMS;
    for (x, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_le(x[0], x[1]);
        let m = f16_le(x[2], x[3]);
        let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
        let qs = &x[8..];
        for j in 0..QK / 2 {
            let xh_0: u8 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1: u8 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0: i32 = ((qs[j] & 0x0F) | xh_0) as i32;
            let x1: i32 = ((qs[j] >> 4) | xh_1) as i32;
            y[j] = add_x86(x0 as f32 * d, m);
            y[j + QK / 2] = add_x86(x1 as f32 * d, m);
        }
    }
}

/// One block of the fast path: the reference's operations on fixed-size arrays, one
/// branch-free loop over the 16 quant bytes writing both halves (LLVM vectorizes it; the
/// per-element shifts of `qh` become lane-wise shifts).
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let m = f16_le(x[2], x[3]);
    let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
    for j in 0..16 {
        let q = x[8 + j] as u32;
        let x0 = ((q & 0x0F) | (((qh >> j) << 4) & 0x10)) as i32;
        let x1 = ((q >> 4) | ((qh >> (j + 12)) & 0x10)) as i32;
        y[j] = add_x86(x0 as f32 * d, m);
        y[j + 16] = add_x86(x1 as f32 * d, m);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
