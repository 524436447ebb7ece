#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Tq2_0Format`] implements [`quant_core::QuantFormat`]; its instance [`TQ2_0`] is registered
//! in quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on fixed-size blocks that LLVM vectorizes, with the same operations. The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block: 64 bytes of 2-bit quants and an f16 scale.
pub const BLOCK_BYTES: usize = 66;

/// Byte offset of the f16 scale `d`.
const D: usize = 64;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "tq2_0", file: "quant-tq2_0/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's TQ2_0 format (type 35): blocks of 256 ternary 2-bit quants sharing one f16 scale.
    pub struct Tq2_0Format;
    /// The registered [`Tq2_0Format`] instance.
    pub static TQ2_0;
    ty: GgmlType::TQ2_0, name: "TQ2_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[D],
}

/// The reference: ggml's `dequantize_row_tq2_0`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[D], x[D + 1]);
        let qs = &x[..D];
        // ggml's `*y++`: the output index runs on in loop order.
        let mut yo = 0;
        for j in (0..qs.len()).step_by(32) {
            for l in 0..4 {
                for m in 0..32 {
                    let q = ((qs[j + m] >> (l * 2)) & 3) as i8;
                    y[yo] = (q - 1) as f32 * d;
                    yo += 1;
                }
            }
        }
    }
}

/// One block of the fast path: the reference's operations on fixed-size arrays, eight 32-lane
/// loops with a constant shift each.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[D], x[D + 1]);
    for h in 0..2 {
        let mut qs = [0u8; 32];
        qs.copy_from_slice(&x[32 * h..32 * h + 32]);
        for l in 0..4 {
            let mut out = [0f32; 32];
            for m in 0..32 {
                let q = ((qs[m] >> (2 * l)) & 3) as i8;
                out[m] = (q - 1) as f32 * d;
            }
            y[128 * h + 32 * l..128 * h + 32 * l + 32].copy_from_slice(&out);
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
