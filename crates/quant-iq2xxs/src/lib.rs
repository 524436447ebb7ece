#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq2XxsFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ2_XXS`] is
//! registered in quant-core's registry. The grid and sign tables are quant-tables' (generated
//! from ggml's data). The CPU reference follows ggml's loop literally; the fast path gathers a
//! block's grid bytes, signs and sub-block scales once, then runs fixed-size 16-lane loops that
//! LLVM vectorizes, with the same operations (so the same bits). The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`, with the tables copied
//! into shared memory once per launch.
#![warn(missing_docs)]

use quant_core::cpu::{f16_le, neg_if};
use quant_core::{GgmlType, KernelSpec};
use quant_tables::{IQ2XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: an f16 scale and 32 `u16` words of grid indices, signs and scales.
pub const BLOCK_BYTES: usize = 66;

/// Byte offset of `qs[32]` (eight `(aux0, aux1)` pairs of `u32`).
const QS: usize = 2;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, preceded by the grid and sign tables they copy.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq2_xxs", file: "quant-iq2xxs/kernel.hip",
    source: quant_tables::kernel_source!(["iq2xxs_grid", "ksigns_iq2xs"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ2_XXS format (type 16): 256-element super-blocks of eight 32-element
    /// sub-blocks; groups of eight magnitudes from a 256-entry grid, with sign patterns and a
    /// 4-bit scale per sub-block.
    pub struct Iq2XxsFormat;
    /// The registered [`Iq2XxsFormat`] instance.
    pub static IQ2_XXS;
    ty: GgmlType::IQ2_XXS, name: "IQ2_XXS", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The little-endian `u32` at byte `o` of a block.
#[inline(always)]
fn u32_at(x: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([x[o], x[o + 1], x[o + 2], x[o + 3]])
}

/// The reference: ggml's `dequantize_row_iq2_xxs`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        let mut yo = 0;
        for ib32 in 0..BLOCK_ELEMS / 32 {
            // memcpy(aux32, x[i].qs + 4*ib32, 8): qs is u16, so byte 8 * ib32 of qs.
            let aux32 = [u32_at(x, QS + 8 * ib32), u32_at(x, QS + 8 * ib32 + 4)];
            let aux8 = aux32[0].to_le_bytes();
            let db: f32 = d * (0.5 + (aux32[1] >> 28) as f32) * 0.25;
            for l in 0..4 {
                let grid = IQ2XXS_GRID[aux8[l] as usize].to_le_bytes();
                let signs = KSIGNS_IQ2XS[((aux32[1] >> (7 * l)) & 127) as usize];
                for j in 0..8 {
                    y[yo + j] = neg_if(db * grid[j] as f32, signs & KMASK_IQ2XS[j] != 0);
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
    let mut db = [0f32; 8];
    let mut sw = [0u32; 8];
    for ib in 0..8 {
        let aux0 = u32_at(x, QS + 8 * ib);
        let aux1 = u32_at(x, QS + 8 * ib + 4);
        db[ib] = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
        let mut s = 0u32;
        for l in 0..4 {
            let g = IQ2XXS_GRID[((aux0 >> (8 * l)) & 255) as usize].to_le_bytes();
            q[32 * ib + 8 * l..32 * ib + 8 * l + 8].copy_from_slice(&g);
            s |= (KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize] as u32) << (8 * l);
        }
        // Bit k of sw[ib]: the sign of element 32ib + k.
        sw[ib] = s;
    }
    for h in 0..16 {
        let dh = db[h / 2];
        let s = sw[h / 2] >> (16 * (h % 2));
        for k in 0..16 {
            let v = dh * q[16 * h + k] as f32;
            y[16 * h + k] = f32::from_bits(v.to_bits() ^ (((s >> k) & 1) << 31));
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
