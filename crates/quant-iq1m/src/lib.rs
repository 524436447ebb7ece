#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Iq1MFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ1_M`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path looks up
//! the 32 grid entries of a block and decodes the sixteen group scales and the 32 deltas once,
//! then runs 32-lane loops over fixed-size arrays that LLVM vectorizes, with the same operations
//! in the same order. The grid is `quant_tables::IQ1S_GRID` (generated from gguf-py, never typed
//! by hand). The GPU kernels are in `kernel.hip`, on the shared skeleton of
//! `kernels/qf_portability.h`; they copy the grid into shared memory once per launch.
//!
//! The block has no f16 field: its scale is assembled from four nibbles ([`super_scale_bits`]),
//! so `f16_scale_offsets` is empty and `make_scales_finite` is
//! written here ([`make_scale_finite`]).
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};
use quant_tables::IQ1S_GRID;

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: 32 bytes of low index bits, 16 bytes of high bits and delta signs,
/// four 16-bit scale words.
pub const BLOCK_BYTES: usize = 56;
/// ggml's `IQ1M_DELTA` (equal to `IQ1S_DELTA`, which `dequantize_row_iq1_m` uses): the shift
/// added to every grid value, its sign given per group by `qh`.
pub const DELTA: f32 = 0.125;

/// Byte offset of `qh[16]`.
const QH: usize = 32;
/// Byte offset of `scales[8]`, read as four little-endian `u16` words `sc[0..4]`.
const SC: usize = 48;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, preceded by the grid table's fragment.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq1_m", file: "quant-iq1m/kernel.hip",
    source: quant_tables::kernel_source!(["iq1s_grid"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ1_M format (type 29): 256-element super-blocks of eight 32-element sub-blocks;
    /// every 8 elements are one entry of the 2048-entry ternary grid, shifted by ±1/8 and scaled by
    /// an f16 scale (spread over four nibbles) times an odd 3-bit factor per 16 elements.
    pub struct Iq1MFormat;
    /// The registered [`Iq1MFormat`] instance.
    pub static IQ1_M;
    ty: GgmlType::IQ1_M, name: "IQ1_M", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[],
    make_scales_finite: finite_scales,
}

/// `make_scales_finite` (the scale is assembled from four nibbles, not stored as an f16
/// field): rewrites each whole block's assembled scale with [`quant_core::finite_f16`]
/// ([`make_scale_finite`]); a trailing partial block is left alone.
fn finite_scales(blocks: &mut [u8]) {
    for block in blocks.chunks_exact_mut(BLOCK_BYTES) {
        if let Some(block) = block.first_chunk_mut() {
            make_scale_finite(block);
        }
    }
}

/// The four scale words `sc[0..4]` of a block (little-endian `u16` at bytes 48..56).
#[inline(always)]
pub fn scale_words(x: &[u8; BLOCK_BYTES]) -> [u16; 4] {
    std::array::from_fn(|k| u16::from_le_bytes([x[SC + 2 * k], x[SC + 2 * k + 1]]))
}

/// The f16 bits of the super-block scale, assembled from the top nibbles of `sc` as ggml does:
/// nibble `k` of the result is bits 12..16 of `sc[k]`.
#[inline(always)]
pub fn super_scale_bits(sc: [u16; 4]) -> u16 {
    (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)
}

/// Writes the f16 bits `h` as the super-block scale of a block: nibble `k` of `h` into bits
/// 12..16 of `sc[k]`, every other bit of the block kept.
pub fn set_super_scale_bits(x: &mut [u8; BLOCK_BYTES], h: u16) {
    for k in 0..4 {
        let nibble = ((h >> (4 * k)) & 0xF) as u8;
        let hi = &mut x[SC + 2 * k + 1];
        *hi = (*hi & 0x0F) | (nibble << 4);
    }
}

/// Makes a block's assembled scale finite and realistic: the assembled f16 goes through
/// [`quant_core::finite_f16`] and is written back into the four nibbles.
pub fn make_scale_finite(x: &mut [u8; BLOCK_BYTES]) {
    let h = super_scale_bits(scale_words(x));
    set_super_scale_bits(x, quant_core::finite_f16(h));
}

/// The reference: ggml's `dequantize_row_iq1_m`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let sc: [u16; 4] =
            std::array::from_fn(|k| u16::from_le_bytes([x[SC + 2 * k], x[SC + 2 * k + 1]]));
        let scale =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let [lo, hi] = scale.to_le_bytes();
        let d = f16_le(lo, hi);
        // ggml advances `qs += 4`, `qh += 2` per sub-block and `y += 8` per group.
        let mut qs = 0usize;
        let mut qh = QH;
        let mut yo = 0usize;
        let mut delta = [0f32; 4];
        let mut idx = [0u16; 4];
        for ib in 0..BLOCK_ELEMS / 32 {
            let s = sc[ib / 2] as i32;
            let dl1: f32 = d * (2 * ((s >> (6 * (ib % 2))) & 0x7) + 1) as f32;
            let dl2: f32 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 0x7) + 1) as f32;
            let (h0, h1) = (x[qh] as i32, x[qh + 1] as i32);
            idx[0] = (x[qs] as i32 | ((h0 << 8) & 0x700)) as u16;
            idx[1] = (x[qs + 1] as i32 | ((h0 << 4) & 0x700)) as u16;
            idx[2] = (x[qs + 2] as i32 | ((h1 << 8) & 0x700)) as u16;
            idx[3] = (x[qs + 3] as i32 | ((h1 << 4) & 0x700)) as u16;
            delta[0] = if h0 & 0x08 != 0 { -DELTA } else { DELTA };
            delta[1] = if h0 & 0x80 != 0 { -DELTA } else { DELTA };
            delta[2] = if h1 & 0x08 != 0 { -DELTA } else { DELTA };
            delta[3] = if h1 & 0x80 != 0 { -DELTA } else { DELTA };
            for l in 0..2 {
                let grid = IQ1S_GRID[idx[l] as usize].to_le_bytes();
                for j in 0..8 {
                    y[yo + j] = dl1 * ((grid[j] as i8) as f32 + delta[l]);
                }
                yo += 8;
            }
            for l in 2..4 {
                let grid = IQ1S_GRID[idx[l] as usize].to_le_bytes();
                for j in 0..8 {
                    y[yo + j] = dl2 * ((grid[j] as i8) as f32 + delta[l]);
                }
                yo += 8;
            }
            qs += 4;
            qh += 2;
        }
    }
}

/// One block of the fast path: the 32 grid entries are looked up into a 256-byte array, and the
/// 16 group-pair scales (`dl1`, `dl2` of each sub-block: the reference's products) and the 32
/// deltas computed once; then eight 32-lane loops compute `dl * (grid + delta)` with no
/// branches.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let sc = scale_words(x);
    let [lo, hi] = super_scale_bits(sc).to_le_bytes();
    let d = f16_le(lo, hi);
    let mut grid = [0u8; BLOCK_ELEMS];
    let mut dls = [0f32; 16];
    let mut deltas = [0f32; 32];
    for ib in 0..8 {
        let s = sc[ib / 2] as u32 >> (6 * (ib % 2));
        dls[2 * ib] = d * (2 * (s & 7) + 1) as f32;
        dls[2 * ib + 1] = d * (2 * ((s >> 3) & 7) + 1) as f32;
        // The four nibbles of qh[2ib], qh[2ib + 1]: group l's is nibble l of this u16.
        let h = u16::from_le_bytes([x[QH + 2 * ib], x[QH + 2 * ib + 1]]) as u32;
        for l in 0..4 {
            let nibble = h >> (4 * l);
            let index = (x[4 * ib + l] as u32 | ((nibble & 7) << 8)) as usize;
            let word = IQ1S_GRID[index & 2047].to_le_bytes();
            grid[32 * ib + 8 * l..32 * ib + 8 * l + 8].copy_from_slice(&word);
            // Bit 3 of the nibble becomes the f32 sign bit of +0.125.
            deltas[4 * ib + l] = f32::from_bits(DELTA.to_bits() | ((nibble & 8) << 28));
        }
    }
    for ib in 0..8 {
        let (dl1, dl2) = (dls[2 * ib], dls[2 * ib + 1]);
        let mut out = [0f32; 32];
        for k in 0..32 {
            // Groups 0 and 1 of the sub-block take dl1, groups 2 and 3 dl2.
            let dl = if k < 16 { dl1 } else { dl2 };
            out[k] = dl * ((grid[32 * ib + k] as i8) as f32 + deltas[4 * ib + k / 8]);
        }
        y[32 * ib..32 * ib + 32].copy_from_slice(&out);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
