#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q1_0Format`] implements [`quant_core::QuantFormat`]; its instance [`Q1_0`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path picks
//! `d` or `-d` by flipping the sign bit of `d` with an integer mask, on fixed-size blocks that
//! LLVM vectorizes (the same bits: ggml's choice involves no arithmetic). The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK1_0`).
pub const BLOCK_ELEMS: usize = 128;
/// Bytes per block: an f16 scale and 128 sign bits.
pub const BLOCK_BYTES: usize = 18;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q1_0", file: "quant-q1_0/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 64,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q1_0 format (type 41): blocks of 128 sign bits sharing one f16 scale; every
    /// element is `d` or `-d`.
    pub struct Q1_0Format;
    /// The registered [`Q1_0Format`] instance.
    pub static Q1_0;
    ty: GgmlType::Q1_0, name: "Q1_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The reference: ggml's `dequantize_row_q1_0`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        // Negation flips the sign bit only (NaN payloads kept), as x86's `xorps` does in ggml.
        let neg_d = -d;
        for (j, yj) in y.iter_mut().enumerate() {
            let byte_index = j / 8;
            let bit_offset = j % 8;
            let bit = (x[2 + byte_index] >> bit_offset) & 1;
            *yj = if bit != 0 { d } else { neg_d };
        }
    }
}

/// One block of the fast path: `d`'s bits with the sign bit flipped where the element's bit is
/// clear (exactly `neg_d`), no branches.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]).to_bits();
    let mut qs = [0u8; 16];
    qs.copy_from_slice(&x[2..]);
    for b in 0..16 {
        for i in 0..8 {
            let clear = (!qs[b] >> i) as u32 & 1;
            y[8 * b + i] = f32::from_bits(d ^ (clear << 31));
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
