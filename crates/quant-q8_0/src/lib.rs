#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q8_0Format`] implements [`quant_core::QuantFormat`]; its instance [`Q8_0`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on fixed-size blocks that LLVM vectorizes, with the same operations. The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK8_0`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: an f16 scale and 32 int8 quants.
pub const BLOCK_BYTES: usize = 34;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q8_0", file: "quant-q8_0/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 256,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q8_0 format (type 8): blocks of 32 int8 quants sharing one f16 scale.
    pub struct Q8_0Format;
    /// The registered [`Q8_0Format`] instance.
    pub static Q8_0;
    ty: GgmlType::Q8_0, name: "Q8_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The reference: ggml's `dequantize_row_q8_0`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        for j in 0..BLOCK_ELEMS {
            y[j] = (x[2 + j] as i8) as f32 * d;
        }
    }
}

/// One block of the fast path: the reference's operations on fixed-size arrays.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    for j in 0..BLOCK_ELEMS {
        y[j] = (x[2 + j] as i8) as f32 * d;
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
