#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq3SFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ3_S`] is registered
//! in quant-core's registry. The CPU reference follows ggml's loop literally, with ggml's tables
//! from `quant-tables`; the fast path decodes each sub-block's scale, 32 grid values and 32 sign
//! bits once, then runs a 32-lane loop of the same multiplies, the sign bit XORed into the
//! product (ggml's negation). The GPU kernels are in `kernel.hip`, on the shared skeleton of
//! `kernels/qf_portability.h`, with the grid in shared memory.
#![warn(missing_docs)]

use quant_core::cpu::{f16_le, neg_if};
use quant_core::{GgmlType, KernelSpec};
use quant_tables::{IQ3S_GRID, KMASK_IQ2XS};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `d`, 64 index bytes, 8 high-bit bytes, 32 sign bytes, 4 scale bytes.
pub const BLOCK_BYTES: usize = 110;

/// Byte offset of `qs[64]`.
const QS: usize = 2;
/// Byte offset of `qh[8]`.
const QH: usize = 66;
/// Byte offset of `signs[32]`.
const SIGNS: usize = 74;
/// Byte offset of `scales[4]`.
const SCALES: usize = 106;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, after the grid they copy into shared memory.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq3_s", file: "quant-iq3s/kernel.hip",
    source: quant_tables::kernel_source!(["iq3s_grid"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ3_S format (type 21): 256-element super-blocks of eight 32-element sub-blocks,
    /// each with a 4-bit scale, whose groups of four values are entries of `iq3s_grid` (9-bit
    /// indices) with one sign bit per value.
    pub struct Iq3SFormat;
    /// The registered [`Iq3SFormat`] instance.
    pub static IQ3_S;
    ty: GgmlType::IQ3_S, name: "IQ3_S", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The reference: ggml's `dequantize_row_iq3_s`, statement for statement.
///
/// ggml writes the sign as `db * grid[j] * (signs[l] & kmask_iq2xs[j] ? -1.f : 1.f)`; the
/// compiler turns that multiplication by a selected `±1.0` into a selected negation, and ggml's
/// output has it so (a NaN's sign flips where the element's sign bit is set: the golden
/// manifests check it). The reference writes the negation itself, so that its bits do not depend
/// on what our optimizer does with the multiplication.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        // ggml advances the pointers `qs`, `qh`, `signs` and `y`; these are the same offsets.
        let (mut qs, mut qh, mut signs, mut yo) = (QS, QH, SIGNS, 0);
        for ib32 in (0..BLOCK_ELEMS / 32).step_by(2) {
            let db1 = d * (1 + 2 * (x[SCALES + ib32 / 2] & 0xf) as i32) as f32;
            let db2 = d * (1 + 2 * (x[SCALES + ib32 / 2] >> 4) as i32) as f32;
            half(x, &mut y[yo..yo + 32], qs, x[qh], signs, db1);
            yo += 32;
            qs += 8;
            signs += 4;
            half(x, &mut y[yo..yo + 32], qs, x[qh + 1], signs, db2);
            yo += 32;
            qh += 2;
            qs += 8;
            signs += 4;
        }
    }
}

/// One of ggml's two `for (int l = 0; l < 4; ++l)` loops of a pair of sub-blocks: 32 values
/// into `y`, from the four index pairs at `x[qs..]` (high bits in `qh`), the four sign bytes at
/// `x[signs..]` and the sub-block's scale `db`.
#[inline(always)]
fn half(x: &[u8], y: &mut [f32], qs: usize, qh: u8, signs: usize, db: f32) {
    for l in 0..4 {
        let i1 = x[qs + 2 * l] as usize | (((qh as usize) << (8 - 2 * l)) & 256);
        let i2 = x[qs + 2 * l + 1] as usize | (((qh as usize) << (7 - 2 * l)) & 256);
        let grid1 = IQ3S_GRID[i1].to_le_bytes();
        let grid2 = IQ3S_GRID[i2].to_le_bytes();
        for j in 0..4 {
            y[8 * l + j] = neg_if(db * grid1[j] as f32, x[signs + l] & KMASK_IQ2XS[j] != 0);
            y[8 * l + j + 4] = neg_if(db * grid2[j] as f32, x[signs + l] & KMASK_IQ2XS[j + 4] != 0);
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
        let sc = (x[SCALES + ib / 2] >> (4 * (ib % 2))) & 0xf;
        let db = d * (1 + 2 * sc as i32) as f32;
        let qh = x[QH + ib] as usize;
        let mut grid = [0u8; 32];
        for t in 0..8 {
            // Bit t of qh[ib] is bit 8 of the index of entry t.
            let index = x[QS + 8 * ib + t] as usize | (((qh >> t) & 1) << 8);
            grid[4 * t..4 * t + 4].copy_from_slice(&IQ3S_GRID[index].to_le_bytes());
        }
        let s = SIGNS + 4 * ib;
        let signs = u32::from_le_bytes([x[s], x[s + 1], x[s + 2], x[s + 3]]);
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
