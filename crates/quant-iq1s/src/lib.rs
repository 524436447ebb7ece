#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq1SFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ1_S`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path looks up
//! the 32 grid entries of a block and decodes the eight sub-block scales and deltas once, then
//! runs 32-lane loops over fixed-size arrays that LLVM vectorizes, with the same operations in
//! the same order. The grid is `quant_tables::IQ1S_GRID` (generated from gguf-py, never typed by
//! hand). The GPU kernels are in `kernel.hip`, on the shared skeleton of
//! `kernels/qf_portability.h`; they copy the grid into shared memory once per launch.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};
use quant_tables::IQ1S_GRID;

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `d`, 32 bytes of low index bits, eight 16-bit `qh` words.
pub const BLOCK_BYTES: usize = 50;
/// ggml's `IQ1S_DELTA`: the shift added to every grid value (its sign comes from `qh` bit 15).
pub const DELTA: f32 = 0.125;

/// Byte offset of `qs[32]`.
const QS: usize = 2;
/// Byte offset of `qh[8]` (little-endian `u16` words).
const QH: usize = 34;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, preceded by the grid table's fragment.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq1_s", file: "quant-iq1s/kernel.hip",
    source: quant_tables::kernel_source!(["iq1s_grid"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ1_S format (type 19): 256-element super-blocks of eight 32-element sub-blocks;
    /// every 8 elements are one entry of the 2048-entry ternary grid, shifted by ±1/8 and scaled
    /// by an f16 scale times an odd 3-bit sub-block factor.
    pub struct Iq1SFormat;
    /// The registered [`Iq1SFormat`] instance.
    pub static IQ1_S;
    ty: GgmlType::IQ1_S, name: "IQ1_S", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// `qh[ib]`, the little-endian `u16` of sub-block `ib`.
#[inline(always)]
fn qh_word(x: &[u8], ib: usize) -> u16 {
    u16::from_le_bytes([x[QH + 2 * ib], x[QH + 2 * ib + 1]])
}

/// The reference: ggml's `dequantize_row_iq1_s`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        // ggml advances `qs += 4` per sub-block and `y += 8` per group; these are the offsets.
        let mut qs = QS;
        let mut yo = 0usize;
        for ib in 0..BLOCK_ELEMS / 32 {
            let qh = qh_word(x, ib);
            let dl: f32 = d * (2 * ((qh as i32 >> 12) & 7) + 1) as f32;
            let delta: f32 = if qh & 0x8000 != 0 { -DELTA } else { DELTA };
            for l in 0..4 {
                let index = x[qs + l] as usize | ((((qh as usize) >> (3 * l)) & 7) << 8);
                let grid = IQ1S_GRID[index].to_le_bytes();
                for j in 0..8 {
                    y[yo + j] = dl * ((grid[j] as i8) as f32 + delta);
                }
                yo += 8;
            }
            qs += 4;
        }
    }
}

/// One block of the fast path: the 32 grid entries are looked up into a 256-byte array and the
/// eight `dl` / `delta` pairs computed once (the reference's products), then eight 32-lane
/// loops compute `dl * (grid + delta)` with no branches.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let mut grid = [0u8; BLOCK_ELEMS];
    let mut dls = [0f32; 8];
    let mut deltas = [0f32; 8];
    for ib in 0..8 {
        let qh = u16::from_le_bytes([x[QH + 2 * ib], x[QH + 2 * ib + 1]]) as u32;
        dls[ib] = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        // Bit 15 becomes the f32 sign bit of +0.125.
        deltas[ib] = f32::from_bits(DELTA.to_bits() | ((qh & 0x8000) << 16));
        for l in 0..4 {
            let index = (x[QS + 4 * ib + l] as u32 | (((qh >> (3 * l)) & 7) << 8)) as usize;
            let word = IQ1S_GRID[index & 2047].to_le_bytes();
            grid[32 * ib + 8 * l..32 * ib + 8 * l + 8].copy_from_slice(&word);
        }
    }
    for ib in 0..8 {
        let (dl, delta) = (dls[ib], deltas[ib]);
        let mut out = [0f32; 32];
        for k in 0..32 {
            out[k] = dl * ((grid[32 * ib + k] as i8) as f32 + delta);
        }
        y[32 * ib..32 * ib + 32].copy_from_slice(&out);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
