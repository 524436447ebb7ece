#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q5KFormat`] implements [`quant_core::QuantFormat`]; its instance [`Q5_K`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path decodes
//! the eight sub-block scales and mins of a block once, then runs fixed-size 32-lane loops that
//! LLVM vectorizes, with the same operations in the same order (so the same bits). The GPU
//! kernels are in `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `d`, `dmin`, 12 scale bytes, 32 bytes of high bits, 128 bytes of
/// nibbles.
pub const BLOCK_BYTES: usize = 176;

/// Byte offset of the 12 packed scale bytes.
const SCALES: usize = 4;
/// Byte offset of `qh[32]`.
const QH: usize = 16;
/// Byte offset of `qs[128]`.
const QS: usize = 48;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q5_k", file: "quant-q5k/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q5_K format (type 13): 256-element super-blocks of eight 32-element sub-blocks,
    /// each with a 6-bit scale and a 6-bit min, and 5-bit quants.
    pub struct Q5KFormat;
    /// The registered [`Q5KFormat`] instance.
    pub static Q5_K;
    ty: GgmlType::Q5_K, name: "Q5_K", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0, 2],
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed scale bytes: ggml's
/// `get_scale_min_k4`. Returns `(sc, m)`, both in `0..64`. `j` outside `0..8` gives `(0, 0)`.
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    match j {
        0..4 => (q[j] & 63, q[j + 4] & 63),
        4..8 => (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        ),
        _ => (0, 0),
    }
}

/// The 12 scale bytes of a block.
#[inline(always)]
fn scale_bytes(x: &[u8]) -> [u8; 12] {
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&x[SCALES..SCALES + 12]);
    scales
}

/// The reference: ggml's `dequantize_row_q5_K`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        let min = f16_le(x[2], x[3]);
        let scales = scale_bytes(x);
        let qh = &x[QH..QH + 32];
        // ggml advances pointers `ql += 32; y += 64`; these are the same offsets.
        let ql = &x[QS..];
        let (mut q, mut yo) = (0usize, 0usize);
        let mut is = 0;
        let (mut u1, mut u2) = (1u8, 2u8);
        for _j in (0..BLOCK_ELEMS).step_by(64) {
            let (sc, m) = get_scale_min_k4(is, &scales);
            let d1: f32 = d * sc as f32;
            let m1: f32 = min * m as f32;
            let (sc, m) = get_scale_min_k4(is + 1, &scales);
            let d2: f32 = d * sc as f32;
            let m2: f32 = min * m as f32;
            for l in 0..32 {
                let hi: i32 = if qh[l] & u1 != 0 { 16 } else { 0 };
                y[yo + l] = d1 * ((ql[q + l] & 0xF) as i32 + hi) as f32 - m1;
            }
            for l in 0..32 {
                let hi: i32 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[yo + 32 + l] = d2 * ((ql[q + l] >> 4) as i32 + hi) as f32 - m2;
            }
            q += 32;
            yo += 64;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/// One block of the fast path: scales and mins decoded once into eight f32 pairs (the same
/// `d * sc` and `min * m` products as the reference), then four 32-lane loops over fixed-size
/// arrays; bit 4 of each quant is moved into place with shifts and masks, no branches.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let min = f16_le(x[2], x[3]);
    let scales = scale_bytes(x);
    let mut ds = [0f32; 8];
    let mut ms = [0f32; 8];
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &scales);
        ds[j] = d * sc as f32;
        ms[j] = min * m as f32;
    }
    let mut qh = [0u8; 32];
    qh.copy_from_slice(&x[QH..QH + 32]);
    for g in 0..4 {
        let (d1, m1, d2, m2) = (ds[2 * g], ms[2 * g], ds[2 * g + 1], ms[2 * g + 1]);
        let mut ql = [0u8; 32];
        ql.copy_from_slice(&x[QS + 32 * g..QS + 32 * g + 32]);
        let mut lo = [0f32; 32];
        let mut hi = [0f32; 32];
        for l in 0..32 {
            // (qh >> s) & 1, moved to bit 4: the reference's `+ 16` (the bits are disjoint).
            let h1 = ((qh[l] >> (2 * g)) & 1) << 4;
            let h2 = ((qh[l] >> (2 * g + 1)) & 1) << 4;
            lo[l] = d1 * ((ql[l] & 0xF) | h1) as f32 - m1;
            hi[l] = d2 * ((ql[l] >> 4) | h2) as f32 - m2;
        }
        y[64 * g..64 * g + 32].copy_from_slice(&lo);
        y[64 * g + 32..64 * g + 64].copy_from_slice(&hi);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
