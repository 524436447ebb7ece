#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq2SFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ2_S`] is registered
//! in quant-core's registry. The grid is quant-tables' (generated from ggml's data). The CPU
//! reference follows ggml's loop literally; the fast path gathers a block's grid bytes and
//! half-sub-block scales once, then runs fixed-size 16-lane loops that LLVM vectorizes, with
//! the same operations (so the same bits). The GPU kernels are in `kernel.hip`, on the shared
//! skeleton of `kernels/qf_portability.h`, with the grid copied into shared memory once per
//! launch.
#![warn(missing_docs)]

use quant_core::cpu::{f16_le, neg_if, scaled_signed_16x16};
use quant_core::{GgmlType, KernelSpec};
use quant_tables::{IQ2S_GRID, KMASK_IQ2XS};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: an f16 scale, 32 index bytes, 32 sign bytes, 8 bytes of high index
/// bits and 8 scale bytes.
pub const BLOCK_BYTES: usize = 82;

/// Byte offset of `qs[64]`: 32 index bytes, then the 32 sign bytes.
const QS: usize = 2;
/// Byte offset of the sign bytes (`qs + QK_K/8`).
const SIGNS: usize = QS + 32;
/// Byte offset of `qh[8]`.
const QH: usize = 66;
/// Byte offset of `scales[8]`.
const SCALES: usize = 74;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, preceded by the grid table they copy.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq2_s", file: "quant-iq2s/kernel.hip",
    source: quant_tables::kernel_source!(["iq2s_grid"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ2_S format (type 22): 256-element super-blocks; groups of eight magnitudes
    /// from a 1024-entry grid with a sign byte each, and a 4-bit scale per 16 elements.
    pub struct Iq2SFormat;
    /// The registered [`Iq2SFormat`] instance.
    pub static IQ2_S;
    ty: GgmlType::IQ2_S, name: "IQ2_S", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The reference: ggml's `dequantize_row_iq2_s`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        let qh = &x[QH..QH + 8];
        let scales = &x[SCALES..SCALES + 8];
        // ggml advances `qs += 4; signs += 4` per sub-block; these are the same offsets.
        let (mut qs, mut signs) = (QS, SIGNS);
        let mut db = [0f32; 2];
        let mut yo = 0;
        for ib32 in 0..BLOCK_ELEMS / 32 {
            db[0] = d * (0.5 + (scales[ib32] & 0xf) as f32) * 0.25;
            db[1] = d * (0.5 + (scales[ib32] >> 4) as f32) * 0.25;
            for l in 0..4 {
                let dl = db[l / 2];
                let idx = x[qs + l] as usize | (((qh[ib32] as usize) << (8 - 2 * l)) & 0x300);
                let grid = IQ2S_GRID[idx].to_le_bytes();
                for j in 0..8 {
                    y[yo + j] = neg_if(dl * grid[j] as f32, x[signs + l] & KMASK_IQ2XS[j] != 0);
                }
                yo += 8;
            }
            qs += 4;
            signs += 4;
        }
    }
}

/// One block of the fast path: the grid lookups and scales done once (the same `db` products
/// as the reference), then sixteen 16-lane loops over fixed-size arrays that multiply and flip
/// sign bits with integer masks, no branches.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let mut q = [0u8; BLOCK_ELEMS];
    let mut db = [0f32; 16];
    let mut sw = [0u32; 16];
    for h in 0..16 {
        // Elements 16h .. 16h + 16: the low nibble of scales[h / 2] for even h, else the high.
        let s = (x[SCALES + h / 2] >> (4 * (h % 2))) & 0xf;
        db[h] = d * (0.5 + s as f32) * 0.25;
        for k in 0..2 {
            let g = 2 * h + k;
            let hi = ((x[QH + g / 4] as usize) << (8 - 2 * (g % 4))) & 0x300;
            let w = IQ2S_GRID[x[QS + g] as usize | hi].to_le_bytes();
            q[8 * g..8 * g + 8].copy_from_slice(&w);
        }
        // Bit k of sw[h]: the sign of element 16h + k.
        sw[h] = u16::from_le_bytes([x[SIGNS + 2 * h], x[SIGNS + 2 * h + 1]]) as u32;
    }
    scaled_signed_16x16(&q, &db, &sw, y);
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
