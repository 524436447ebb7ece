#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`IQ4XSFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ4_XS`] is registered
//! in quant-core's registry. The CPU reference follows ggml's loop literally; the fast path
//! decodes the eight sub-block scales of a block once, then runs fixed-size 16-lane loops with the
//! same operations (so the same bits), which LLVM vectorizes (the dispatched AVX2 build gathers
//! the table values 8 lanes at a time). The GPU kernels are in `kernel.hip`, on the shared
//! skeleton of `kernels/qf_portability.h`; they look the value table up in a shared-memory copy.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};
use quant_tables::KVALUES_IQ4NL;

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `d`, `scales_h`, `scales_l[4]` and 128 bytes of 4-bit indices.
pub const BLOCK_BYTES: usize = 136;

/// Byte offset of `scales_h` (u16).
const SCALES_H: usize = 2;
/// Byte offset of `scales_l[4]`.
const SCALES_L: usize = 4;
/// Byte offset of `qs[128]`.
const QS: usize = 8;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, after the `kvalues_iq4nl` table fragment.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq4_xs", file: "quant-iq4xs/kernel.hip",
    source: quant_tables::kernel_source!(["kvalues_iq4nl"], "../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ4_XS format (type 23): 256-element super-blocks of eight 32-element sub-blocks,
    /// each with a 6-bit scale, and four-bit indices into the non-linear table `kvalues_iq4nl`.
    pub struct IQ4XSFormat;
    /// The registered [`IQ4XSFormat`] instance.
    pub static IQ4_XS;
    ty: GgmlType::IQ4_XS, name: "IQ4_XS", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The 6-bit scale `ls` (0..64) of sub-block `ib` (0..8), from `scales_h` and `scales_l[4]`.
#[inline(always)]
fn sub_scale(scales_h: u16, scales_l: &[u8], ib: usize) -> i32 {
    (((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32)
        | ((((scales_h >> (2 * ib)) & 3) as i32) << 4)
}

/// The reference: ggml's `dequantize_row_iq4_xs`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let scales_h = u16::from_le_bytes([x[SCALES_H], x[SCALES_H + 1]]);
        let scales_l = &x[SCALES_L..SCALES_L + 4];
        let d = f16_le(x[0], x[1]);
        for ib in 0..BLOCK_ELEMS / 32 {
            let ls = sub_scale(scales_h, scales_l, ib);
            let dl = d * (ls - 32) as f32;
            let qs = &x[QS + 16 * ib..QS + 16 * ib + 16];
            let y = &mut y[32 * ib..32 * ib + 32];
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// One block of the fast path: the eight sub-block scales `dl` first, then each sub-block's
/// 32 elements on fixed-size arrays, with the reference's operations.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let scales_h = u16::from_le_bytes([x[SCALES_H], x[SCALES_H + 1]]);
    let scales_l = &x[SCALES_L..SCALES_L + 4];
    let dl: [f32; 8] =
        std::array::from_fn(|ib| d * (sub_scale(scales_h, scales_l, ib) - 32) as f32);
    for ib in 0..8 {
        let mut lo = [0f32; 16];
        let mut hi = [0f32; 16];
        for j in 0..16 {
            let q = x[QS + 16 * ib + j];
            lo[j] = dl[ib] * KVALUES_IQ4NL[(q & 0xf) as usize] as f32;
            hi[j] = dl[ib] * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
        y[32 * ib..32 * ib + 16].copy_from_slice(&lo);
        y[32 * ib + 16..32 * ib + 32].copy_from_slice(&hi);
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
