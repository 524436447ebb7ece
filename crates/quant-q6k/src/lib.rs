#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q6KFormat`] implements [`quant_core::QuantFormat`]; its instance [`Q6_K`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally; the fast path
//! computes the sixteen `d * sc` products of a block once (the very products the reference
//! forms first), then runs fixed-size 16-lane loops that LLVM vectorizes. The GPU kernels are in
//! `kernel.hip` (see [`QuantFormat::kernel`](quant_core::QuantFormat::kernel)).
#![warn(missing_docs)]

mod kernel;

use quant_core::cpu::f16_le;
use quant_core::GgmlType;

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `ql[128]`, `qh[64]`, `scales[16]`, `d`.
pub const BLOCK_BYTES: usize = 210;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

const QL: usize = 0;
const QH: usize = 128;
const SC: usize = 192;
const D: usize = 208;

/// The reference: ggml's `dequantize_row_q6_K`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[D], x[D + 1]);
        // ggml advances the pointers `y += 128; ql += 64; qh += 32; sc += 8` per half; these
        // are the same offsets.
        let (mut yo, mut ql, mut qh, mut sc) = (0usize, QL, QH, SC);
        for _n in (0..BLOCK_ELEMS).step_by(128) {
            for l in 0..32 {
                let is = l / 16;
                let (lo, hi, h) = (x[ql + l], x[ql + l + 32], x[qh + l]);
                // `(int8_t)(6-bit value) - 32`, stored as int8_t: -32..=31
                let q1 = (((lo & 0xF) | ((h & 3) << 4)) as i8 as i32 - 32) as i8;
                let q2 = (((hi & 0xF) | (((h >> 2) & 3) << 4)) as i8 as i32 - 32) as i8;
                let q3 = (((lo >> 4) | (((h >> 4) & 3) << 4)) as i8 as i32 - 32) as i8;
                let q4 = (((hi >> 4) | (((h >> 6) & 3) << 4)) as i8 as i32 - 32) as i8;
                // `d * sc[is] * q1`: (d * (float)sc) * (float)q, left to right
                y[yo + l] = d * x[sc + is] as i8 as f32 * q1 as f32;
                y[yo + l + 32] = d * x[sc + is + 2] as i8 as f32 * q2 as f32;
                y[yo + l + 64] = d * x[sc + is + 4] as i8 as f32 * q3 as f32;
                y[yo + l + 96] = d * x[sc + is + 6] as i8 as f32 * q4 as f32;
            }
            yo += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/// One block of the fast path: the sixteen `d * sc` products first (as the reference forms
/// them), then per half four 32-element output runs computed in 16-lane loops over fixed-size
/// arrays, no bounds checks.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // one index drives three inputs and four outputs in lockstep
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[D], x[D + 1]);
    let mut ds = [0f32; 16];
    for i in 0..16 {
        ds[i] = d * x[SC + i] as i8 as f32;
    }
    for n in 0..2 {
        for h in 0..2 {
            // elements 128n + 16h + {0, 32, 64, 96} + (0..16), scales 8n + h + {0, 2, 4, 6}
            let s = [
                ds[8 * n + h],
                ds[8 * n + h + 2],
                ds[8 * n + h + 4],
                ds[8 * n + h + 6],
            ];
            let mut out = [[0f32; 16]; 4];
            for i in 0..16 {
                let l = 16 * h + i;
                let a = x[QL + 64 * n + l];
                let b = x[QL + 64 * n + l + 32];
                let hb = x[QH + 32 * n + l];
                let q1 = ((a & 0xF) | ((hb & 3) << 4)) as i32 - 32;
                let q2 = ((b & 0xF) | (((hb >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((a >> 4) | (((hb >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((b >> 4) | (((hb >> 6) & 3) << 4)) as i32 - 32;
                out[0][i] = s[0] * q1 as f32;
                out[1][i] = s[1] * q2 as f32;
                out[2][i] = s[2] * q3 as f32;
                out[3][i] = s[3] * q4 as f32;
            }
            for (k, o) in out.iter().enumerate() {
                let base = 128 * n + 32 * k + 16 * h;
                y[base..base + 16].copy_from_slice(o);
            }
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

quant_core::define_format! {
    /// ggml's Q6_K format (type 14): 256-element super-blocks of 6-bit quants with sixteen signed
    /// 8-bit sub-block scales and an f16 super-scale.
    pub struct Q6KFormat;
    /// The registered [`Q6KFormat`] instance.
    pub static Q6_K;
    ty: GgmlType::Q6_K, name: "Q6_K", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&kernel::KERNEL), f16_scales: &[208],
}

#[cfg(test)]
mod tests;
