#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q4KFormat`] implements [`quant_core::QuantFormat`]; its instance [`Q4_K`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path decodes
//! the eight sub-block scales and mins of a block once, then runs fixed-size 32-lane loops that
//! LLVM vectorizes, with the same operations in the same order (so the same bits). The GPU
//! kernels are in `kernel.hip` (see [`QuantFormat::kernel`](quant_core::QuantFormat::kernel)).
#![warn(missing_docs)]

mod kernel;

use quant_core::cpu::f16_le;
use quant_core::GgmlType;

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `d`, `dmin`, 12 scale bytes, 128 bytes of nibbles.
pub const BLOCK_BYTES: usize = 144;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// Scale and min of sub-block `j` (0..8) from the 12 packed scale bytes: ggml's
/// `get_scale_min_k4`. Returns `(sc, m)`, both in `0..64`. `j` outside `0..8` gives `(0, 0)`.
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else if j < 8 {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    } else {
        (0, 0)
    }
}

/// The reference: ggml's `dequantize_row_q4_K`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[0], x[1]);
        let min = f16_le(x[2], x[3]);
        let mut scales = [0u8; 12];
        scales.copy_from_slice(&x[4..16]);
        // ggml advances pointers `q += 32; y += 64`; these are the same offsets.
        let qs = &x[16..];
        let (mut q, mut yo) = (0usize, 0usize);
        let mut is = 0;
        for _j in (0..BLOCK_ELEMS).step_by(64) {
            let (sc, m) = get_scale_min_k4(is, &scales);
            let d1: f32 = d * sc as f32;
            let m1: f32 = min * m as f32;
            let (sc, m) = get_scale_min_k4(is + 1, &scales);
            let d2: f32 = d * sc as f32;
            let m2: f32 = min * m as f32;
            for l in 0..32 {
                y[yo + l] = d1 * (qs[q + l] & 0xF) as f32 - m1;
            }
            for l in 0..32 {
                y[yo + 32 + l] = d2 * (qs[q + l] >> 4) as f32 - m2;
            }
            q += 32;
            yo += 64;
            is += 2;
        }
    }
}

/// One block of the fast path: scales and mins decoded once into eight f32 pairs (the same
/// `d * sc` and `min * m` products as the reference), then four 32-lane loops over fixed-size
/// arrays, no bounds checks.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let min = f16_le(x[2], x[3]);
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&x[4..16]);
    let mut ds = [0f32; 8];
    let mut ms = [0f32; 8];
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &scales);
        ds[j] = d * sc as f32;
        ms[j] = min * m as f32;
    }
    for g in 0..4 {
        let (d1, m1, d2, m2) = (ds[2 * g], ms[2 * g], ds[2 * g + 1], ms[2 * g + 1]);
        let mut lo = [0f32; 32];
        let mut hi = [0f32; 32];
        for l in 0..32 {
            let q = x[16 + 32 * g + l];
            lo[l] = d1 * (q & 0xF) as f32 - m1;
            hi[l] = d2 * (q >> 4) as f32 - m2;
        }
        y[64 * g..64 * g + 32].copy_from_slice(&lo);
        y[64 * g + 32..64 * g + 64].copy_from_slice(&hi);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

quant_core::define_format! {
    /// ggml's Q4_K format (type 12): 256-element super-blocks of eight 32-element sub-blocks, each
    /// with a 6-bit scale and a 6-bit min.
    pub struct Q4KFormat;
    /// The registered [`Q4KFormat`] instance.
    pub static Q4_K;
    ty: GgmlType::Q4_K, name: "Q4_K", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&kernel::KERNEL), f16_scales: &[0, 2],
}

#[cfg(test)]
mod tests;
