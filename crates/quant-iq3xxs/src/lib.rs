#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq3XxsFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ3_XXS`] is
//! registered in quant-core's registry. The CPU reference follows ggml's loop literally, with
//! ggml's tables from `quant-tables`; the fast path decodes each sub-block's scale, 32 grid values
//! and 32 sign bits once, then runs a 32-lane loop of the same multiplies, the sign bit XORed
//! into the product (ggml's negation). The GPU kernels are in `kernel.hip`, on the
//! shared skeleton of `kernels/qf_portability.h`, with the tables in shared memory.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};
use quant_tables::{IQ3XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `d`, 64 grid indices and eight 32-bit scale-and-sign words.
pub const BLOCK_BYTES: usize = 98;

/// Byte offset of `qs` (the grid indices).
const QS: usize = 2;
/// Byte offset of the scale-and-sign words (`qs + QK_K/4`).
const SAS: usize = QS + BLOCK_ELEMS / 4;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, after the tables they copy into shared memory.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq3_xxs", file: "quant-iq3xxs/kernel.hip",
    source: quant_tables::kernel_source!(["iq3xxs_grid", "ksigns_iq2xs"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ3_XXS format (type 18): 256-element super-blocks of eight 32-element sub-blocks,
    /// each with a 4-bit scale, whose groups of four values are entries of `iq3xxs_grid` with
    /// signs from `ksigns_iq2xs`.
    pub struct Iq3XxsFormat;
    /// The registered [`Iq3XxsFormat`] instance.
    pub static IQ3_XXS;
    ty: GgmlType::IQ3_XXS, name: "IQ3_XXS", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The little-endian u32 at `x[at..at + 4]`.
#[inline(always)]
fn u32_at(x: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([x[at], x[at + 1], x[at + 2], x[at + 3]])
}

/// The reference: ggml's `dequantize_row_iq3_xxs`, statement for statement.
///
/// ggml writes the sign as `db * grid[j] * (signs & kmask_iq2xs[j] ? -1.f : 1.f)`; the compiler
/// turns that multiplication by a selected `±1.0` into a selected negation, and ggml's output has
/// it so (a NaN's sign flips where the element's sign bit is set, as IQ3_S's golden manifest,
/// with the same C expression, shows). The reference writes the negation itself, so that its
/// bits do not depend on what our optimizer does with the multiplication.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        // ggml advances `qs += 8` and `y += 8`; these are the same offsets.
        let mut qs = QS;
        let mut yo = 0;
        for ib32 in 0..BLOCK_ELEMS / 32 {
            let aux32 = u32_at(x, SAS + 4 * ib32);
            let db = d * (0.5f32 + (aux32 >> 28) as f32) * 0.5f32;
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize];
                let grid1 = IQ3XXS_GRID[x[qs + 2 * l] as usize].to_le_bytes();
                let grid2 = IQ3XXS_GRID[x[qs + 2 * l + 1] as usize].to_le_bytes();
                for j in 0..4 {
                    let v = db * grid1[j] as f32;
                    y[yo + j] = if signs & KMASK_IQ2XS[j] != 0 { -v } else { v };
                    let v = db * grid2[j] as f32;
                    y[yo + j + 4] = if signs & KMASK_IQ2XS[j + 4] != 0 {
                        -v
                    } else {
                        v
                    };
                }
                yo += 8;
            }
            qs += 8;
        }
    }
}

/// One block of the fast path. Per sub-block: its `db` (the reference's expression), its 32 grid
/// values gathered into a byte array and its 32 sign bits in one word; then one 32-lane loop
/// `db * grid` with the sign bit XORed into the product's (the reference's negation, with no
/// branch).
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    for ib in 0..8 {
        let aux32 = u32_at(x, SAS + 4 * ib);
        let db = d * (0.5f32 + (aux32 >> 28) as f32) * 0.5f32;
        let mut grid = [0u8; 32];
        for t in 0..8 {
            let entry = IQ3XXS_GRID[x[QS + 8 * ib + t] as usize].to_le_bytes();
            grid[4 * t..4 * t + 4].copy_from_slice(&entry);
        }
        // Bit 8l + k: the sign of element 8l + k of the sub-block.
        let mut signs = 0u32;
        for l in 0..4 {
            signs |= (KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize] as u32) << (8 * l);
        }
        let mut out = [0f32; 32];
        for k in 0..32 {
            let v = db * grid[k] as f32;
            out[k] = f32::from_bits(v.to_bits() ^ (((signs >> k) & 1) << 31));
        }
        y[32 * ib..32 * ib + 32].copy_from_slice(&out);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
