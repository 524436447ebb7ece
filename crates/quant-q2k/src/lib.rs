#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q2KFormat`] implements [`quant_core::QuantFormat`]; its instance [`Q2_K`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path decodes
//! the sixteen `(dl, ml)` pairs of a block once, then runs fixed-size 16-lane loops that LLVM
//! vectorizes, with the same operations in the same order. The GPU kernels are in `kernel.hip`,
//! on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: 16 scale/min bytes, 64 bytes of 2-bit quants, `d` and `dmin`.
pub const BLOCK_BYTES: usize = 84;
/// Byte offset of `scales[16]` (low nibble: scale, high nibble: min, per 16 elements).
pub const SCALES_OFFSET: usize = 0;
/// Byte offset of `qs[64]`, the 2-bit quants.
pub const QS_OFFSET: usize = 16;
/// Byte offset of the f16 super-scale `d`.
pub const D_OFFSET: usize = 80;
/// Byte offset of the f16 super-min `dmin`.
pub const DMIN_OFFSET: usize = 82;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q2_k", file: "quant-q2k/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q2_K format (type 10): 256-element super-blocks of sixteen 16-element sub-blocks,
    /// each with a 4-bit scale and a 4-bit min, and 2-bit quants.
    pub struct Q2KFormat;
    /// The registered [`Q2KFormat`] instance.
    pub static Q2_K;
    ty: GgmlType::Q2_K, name: "Q2_K", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[D_OFFSET, DMIN_OFFSET],
}

/// The reference: ggml's `dequantize_row_q2_K`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[D_OFFSET], x[D_OFFSET + 1]);
        let min = f16_le(x[DMIN_OFFSET], x[DMIN_OFFSET + 1]);
        let scales = &x[SCALES_OFFSET..SCALES_OFFSET + 16];
        // ggml advances pointers `q += 32` and `y++`; these are the same offsets.
        let mut q = QS_OFFSET;
        let mut yo = 0usize;
        let mut is = 0usize;
        for _n in (0..BLOCK_ELEMS).step_by(128) {
            let mut shift = 0u32;
            for _j in 0..4 {
                let sc = scales[is];
                is += 1;
                let dl: f32 = d * (sc & 0xF) as f32;
                let ml: f32 = min * (sc >> 4) as f32;
                for l in 0..16 {
                    y[yo] = dl * (((x[q + l] >> shift) & 3) as i8) as f32 - ml;
                    yo += 1;
                }

                let sc = scales[is];
                is += 1;
                let dl: f32 = d * (sc & 0xF) as f32;
                let ml: f32 = min * (sc >> 4) as f32;
                for l in 0..16 {
                    y[yo] = dl * (((x[q + l + 16] >> shift) & 3) as i8) as f32 - ml;
                    yo += 1;
                }

                shift += 2;
            }
            q += 32;
        }
    }
}

/// One block of the fast path: the sixteen `dl = d * sc` and `ml = min * m` decoded once (the
/// reference's products), then four 16-lane loops over fixed-size arrays (each quant byte read
/// once, its four 2-bit fields written to four sub-blocks), no bounds checks and no branches.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[D_OFFSET], x[D_OFFSET + 1]);
    let min = f16_le(x[DMIN_OFFSET], x[DMIN_OFFSET + 1]);
    let mut dl = [0f32; 16];
    let mut ml = [0f32; 16];
    for s in 0..16 {
        let sc = x[SCALES_OFFSET + s];
        dl[s] = d * (sc & 0xF) as f32;
        ml[s] = min * (sc >> 4) as f32;
    }
    // Byte l of qs[32n + 16h ..] (l in 0..16) holds the quants of elements
    // 128n + 32k + 16h + l, k in 0..4 (bits 2k, 2k+1), of sub-block s = 8n + 2k + h: one
    // 16-lane loop per (n, h) reads each byte once and writes the four elements.
    for n in 0..2 {
        for h in 0..2 {
            let q: &[u8; 16] = x[QS_OFFSET + 32 * n + 16 * h..]
                .first_chunk()
                .expect("inside the block");
            let s = 8 * n + h;
            let (a0, a1, a2, a3) = (dl[s], dl[s + 2], dl[s + 4], dl[s + 6]);
            let (m0, m1, m2, m3) = (ml[s], ml[s + 2], ml[s + 4], ml[s + 6]);
            let o = 128 * n + 16 * h;
            for l in 0..16 {
                let b = q[l] as i32;
                y[o + l] = a0 * (b & 3) as f32 - m0;
                y[o + 32 + l] = a1 * ((b >> 2) & 3) as f32 - m1;
                y[o + 64 + l] = a2 * ((b >> 4) & 3) as f32 - m2;
                y[o + 96 + l] = a3 * ((b >> 6) & 3) as f32 - m3;
            }
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
