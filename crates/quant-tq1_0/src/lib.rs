#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Tq1_0Format`] implements [`quant_core::QuantFormat`]; its instance [`TQ1_0`] is registered
//! in quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on fixed-size blocks that LLVM vectorizes, with the same operations. The GPU kernels are in
//! `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block: 48 bytes of five trits, 4 bytes of four trits and an f16 scale.
pub const BLOCK_BYTES: usize = 54;

/// Byte offset of `qh[4]`.
const QH: usize = 48;
/// Byte offset of the f16 scale `d`.
const D: usize = 52;

/// ggml's `pow3`: multiplying a packed byte by `POW3[n]` (wrapping) brings its trit `n` to the
/// top.
pub const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "tq1_0", file: "quant-tq1_0/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's TQ1_0 format (type 34): blocks of 256 ternary digits packed in base 3 (five or four
    /// per byte), sharing one f16 scale.
    pub struct Tq1_0Format;
    /// The registered [`Tq1_0Format`] instance.
    pub static TQ1_0;
    ty: GgmlType::TQ1_0, name: "TQ1_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[D],
}

/// The reference: ggml's `dequantize_row_tq1_0`, statement for statement.
#[allow(clippy::needless_range_loop)] // ggml's loop indices, kept as ggml writes them
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = f16_le(x[D], x[D + 1]);
        let qs = &x[..QH];
        let qh = &x[QH..D];
        // ggml's `*y++`: the output index runs on in loop order.
        let mut yo = 0;
        let whole = qs.len() - qs.len() % 32;
        for j in (0..whole).step_by(32) {
            for n in 0..5 {
                for m in 0..32 {
                    let q: u8 = qs[j + m].wrapping_mul(POW3[n]);
                    let xi = ((q as u16 * 3) >> 8) as i16;
                    y[yo] = (xi - 1) as f32 * d;
                    yo += 1;
                }
            }
        }
        for j in (whole..qs.len()).step_by(16) {
            for n in 0..5 {
                for m in 0..16 {
                    let q: u8 = qs[j + m].wrapping_mul(POW3[n]);
                    let xi = ((q as u16 * 3) >> 8) as i16;
                    y[yo] = (xi - 1) as f32 * d;
                    yo += 1;
                }
            }
        }
        for n in 0..4 {
            for j in 0..qh.len() {
                let q: u8 = qh[j].wrapping_mul(POW3[n]);
                let xi = ((q as u16 * 3) >> 8) as i16;
                y[yo] = (xi - 1) as f32 * d;
                yo += 1;
            }
        }
    }
}

/// `(float)(xi - 1) * d` for the trit at the top of `q` (`q` already multiplied by its power
/// of 3), as the reference computes it.
#[inline(always)]
fn trit_value(q: u8, d: f32) -> f32 {
    let xi = ((q as u16 * 3) >> 8) as i16;
    (xi - 1) as f32 * d
}

/// One block of the fast path: the reference's operations on fixed-size arrays. The five (or
/// four) trits of a run of bytes are straight lane-wise loops, one per power of 3.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[D], x[D + 1]);
    let mut a = [0u8; 32];
    a.copy_from_slice(&x[..32]);
    for n in 0..5 {
        let mut out = [0f32; 32];
        for m in 0..32 {
            out[m] = trit_value(a[m].wrapping_mul(POW3[n]), d);
        }
        y[32 * n..32 * n + 32].copy_from_slice(&out);
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&x[32..QH]);
    for n in 0..5 {
        let mut out = [0f32; 16];
        for m in 0..16 {
            out[m] = trit_value(b[m].wrapping_mul(POW3[n]), d);
        }
        y[160 + 16 * n..160 + 16 * n + 16].copy_from_slice(&out);
    }
    // The last 16 elements: trit n of qh[j] is element 240 + 4n + j.
    let mut c = [0u8; 16];
    for n in 0..4 {
        for j in 0..4 {
            c[4 * n + j] = x[QH + j].wrapping_mul(POW3[n]);
        }
    }
    let mut out = [0f32; 16];
    for k in 0..16 {
        out[k] = trit_value(c[k], d);
    }
    y[240..].copy_from_slice(&out);
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
