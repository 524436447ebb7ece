#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q4_1Format`] implements [`quant_core::QuantFormat`]; its instance [`Q4_1`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on fixed-size blocks that LLVM vectorizes, with the same operations. The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::{add_x86, f16_le};
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK4_1`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: two f16 fields (`d`, `m`) and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 20;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q4_1", file: "quant-q4_1/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 256,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q4_1 format (type 3): blocks of 32 unsigned four-bit quants sharing an f16 scale
    /// and an f16 offset.
    pub struct Q4_1Format;
    /// The registered [`Q4_1Format`] instance.
    pub static Q4_1;
    ty: GgmlType::Q4_1, name: "Q4_1", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0, 2],
}

/// The reference: ggml's `dequantize_row_q4_1`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    const QK: usize = BLOCK_ELEMS;
    for (x, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_le(x[0], x[1]);
        let m = f16_le(x[2], x[3]);
        let qs = &x[4..];
        for j in 0..QK / 2 {
            let x0: i32 = (qs[j] & 0x0F) as i32;
            let x1: i32 = (qs[j] >> 4) as i32;
            y[j] = add_x86(x0 as f32 * d, m);
            y[j + QK / 2] = add_x86(x1 as f32 * d, m);
        }
    }
}

/// One block of the fast path: the reference's operations on fixed-size arrays, one
/// branch-free loop over the 16 quant bytes writing both halves (LLVM vectorizes it).
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let m = f16_le(x[2], x[3]);
    for j in 0..16 {
        let q = x[4 + j];
        y[j] = add_x86((q & 0x0F) as i32 as f32 * d, m);
        y[j + 16] = add_x86((q >> 4) as i32 as f32 * d, m);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
