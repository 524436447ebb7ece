#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q2_0Format`] implements [`quant_core::QuantFormat`]; its instance [`Q2_0`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on fixed-size blocks that LLVM vectorizes, with the same operations. The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK2_0`).
pub const BLOCK_ELEMS: usize = 64;
/// Bytes per block: an f16 scale and 64 two-bit quants.
pub const BLOCK_BYTES: usize = 18;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q2_0", file: "quant-q2_0/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 128,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q2_0 format (type 42): blocks of 64 two-bit quants sharing one f16 scale; quant
    /// `q` stands for `(q - 1) * d`.
    pub struct Q2_0Format;
    /// The registered [`Q2_0Format`] instance.
    pub static Q2_0;
    ty: GgmlType::Q2_0, name: "Q2_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The reference: ggml's `dequantize_row_q2_0`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        for (j, yj) in y.iter_mut().enumerate() {
            let byte_index = j / 4;
            let bit_offset = (j % 4) * 2;
            let q = (x[2 + byte_index] >> bit_offset) & 0x03;
            *yj = (q as i32 - 1) as f32 * d;
        }
    }
}

/// One block of the fast path: the reference's operations on fixed-size arrays.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let mut qs = [0u8; 16];
    qs.copy_from_slice(&x[2..]);
    for b in 0..16 {
        for i in 0..4 {
            let q = (qs[b] >> (2 * i)) & 3;
            y[4 * b + i] = (q as i32 - 1) as f32 * d;
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
