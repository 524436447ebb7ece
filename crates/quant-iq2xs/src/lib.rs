#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq2XsFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ2_XS`] is
//! registered in quant-core's registry. The grid and sign tables are quant-tables' (generated
//! from ggml's data). The CPU reference follows ggml's loop literally; the fast path gathers a
//! block's grid bytes, signs and half-sub-block scales once, then runs fixed-size 16-lane loops
//! that LLVM vectorizes, with the same operations (so the same bits). The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`, with the tables copied
//! into shared memory once per launch.
#![warn(missing_docs)]

use quant_core::cpu::{f16_le, neg_if, scaled_signed_16x16};
use quant_core::{GgmlType, KernelSpec};
use quant_tables::{IQ2XS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: an f16 scale, 32 `u16` grid-and-sign words and 8 scale bytes.
pub const BLOCK_BYTES: usize = 74;

/// Byte offset of `qs[32]` (`u16`).
const QS: usize = 2;
/// Byte offset of `scales[8]`.
const SCALES: usize = 66;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, preceded by the grid and sign tables they copy.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq2_xs", file: "quant-iq2xs/kernel.hip",
    source: quant_tables::kernel_source!(["iq2xs_grid", "ksigns_iq2xs"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ2_XS format (type 17): 256-element super-blocks; groups of eight magnitudes
    /// from a 512-entry grid with a sign pattern each, and a 4-bit scale per 16 elements.
    pub struct Iq2XsFormat;
    /// The registered [`Iq2XsFormat`] instance.
    pub static IQ2_XS;
    ty: GgmlType::IQ2_XS, name: "IQ2_XS", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// `qs[g]`, the little-endian `u16` of group `g` of a block.
#[inline(always)]
fn qs(x: &[u8], g: usize) -> u16 {
    u16::from_le_bytes([x[QS + 2 * g], x[QS + 2 * g + 1]])
}

/// The reference: ggml's `dequantize_row_iq2_xs`, statement for statement.
#[allow(clippy::needless_range_loop)] // ggml's `ib32` indexes `scales` and `qs`
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        let scales = &x[SCALES..SCALES + 8];
        let mut db = [0f32; 2];
        let mut yo = 0;
        for ib32 in 0..BLOCK_ELEMS / 32 {
            db[0] = d * (0.5 + (scales[ib32] & 0xf) as f32) * 0.25;
            db[1] = d * (0.5 + (scales[ib32] >> 4) as f32) * 0.25;
            for l in 0..4 {
                let q = qs(x, 4 * ib32 + l);
                let grid = IQ2XS_GRID[(q & 511) as usize].to_le_bytes();
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                for j in 0..8 {
                    y[yo + j] = neg_if(db[l / 2] * grid[j] as f32, signs & KMASK_IQ2XS[j] != 0);
                }
                yo += 8;
            }
        }
    }
}

/// One block of the fast path: the table lookups and scales done once (the same `db` products
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
        let mut signs = 0u32;
        for k in 0..2 {
            let w = qs(x, 2 * h + k);
            let g = IQ2XS_GRID[(w & 511) as usize].to_le_bytes();
            q[16 * h + 8 * k..16 * h + 8 * k + 8].copy_from_slice(&g);
            signs |= (KSIGNS_IQ2XS[(w >> 9) as usize] as u32) << (8 * k);
        }
        // Bit k of sw[h]: the sign of element 16h + k.
        sw[h] = signs;
    }
    scaled_signed_16x16(&q, &db, &sw, y);
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
