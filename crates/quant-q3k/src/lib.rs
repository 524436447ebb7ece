#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`Q3KFormat`] implements [`quant_core::QuantFormat`]; its instance [`Q3_K`] is registered in
//! quant-core's registry. The CPU reference follows ggml's loop literally (scales unpacked
//! through its four 32-bit words); the fast path reads each 6-bit scale straight from its nibble
//! and bit pair ([`scale_raw`]), computes the sixteen `dl` once, then runs fixed-size 16-lane
//! loops that LLVM vectorizes, with the same operations in the same order. The GPU kernels are
//! in `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};

/// Elements per super-block (ggml's `QK_K`).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: 32 bytes of high bits, 64 bytes of 2-bit quants, 12 scale bytes, `d`.
pub const BLOCK_BYTES: usize = 110;
/// Byte offset of `hmask[32]`, the quants' high bits.
pub const HMASK_OFFSET: usize = 0;
/// Byte offset of `qs[64]`, the quants' low 2 bits.
pub const QS_OFFSET: usize = 32;
/// Byte offset of `scales[12]`, the sixteen packed 6-bit scales.
pub const SCALES_OFFSET: usize = 96;
/// Byte offset of the f16 super-scale `d`.
pub const D_OFFSET: usize = 108;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q3_k", file: "quant-q3k/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 32,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's Q3_K format (type 11): 256-element super-blocks of sixteen 16-element sub-blocks,
    /// each with a 6-bit scale, and 3-bit quants (a high-bit mask and 2-bit low parts).
    pub struct Q3KFormat;
    /// The registered [`Q3KFormat`] instance.
    pub static Q3_K;
    ty: GgmlType::Q3_K, name: "Q3_K", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[D_OFFSET],
}

/// The stored 6-bit scale `k` (`0..16`, the scale plus 32, in `0..64`) of the 12 packed scale
/// bytes: the low four bits are nibble `k / 8` of `scales[k % 8]`, the high two bits are pair
/// `k / 4` of `scales[8 + k % 4]`. Equal to ggml's unpacking ([`unpack_scales_ggml`]).
pub const fn scale_raw(scales: &[u8; 12], k: usize) -> u8 {
    let k = k % 16;
    let low4 = (scales[k % 8] >> (4 * (k / 8))) & 0xF;
    let hi2 = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
    low4 | (hi2 << 4)
}

/// ggml's unpacking of the 12 scale bytes into sixteen `int8` (`aux[4]` words viewed as bytes),
/// statement for statement.
pub fn unpack_scales_ggml(scales: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| {
        u32::from_le_bytes([
            scales[4 * i],
            scales[4 * i + 1],
            scales[4 * i + 2],
            scales[4 * i + 3],
        ])
    };
    let mut aux = [word(0), word(1), word(2), 0u32];
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
    aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
    aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
    aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
    // ggml reads the words through an `int8_t *`: the bytes in memory (little-endian) order.
    std::array::from_fn(|k| aux[k / 4].to_le_bytes()[k % 4] as i8)
}

/// The reference: ggml's `dequantize_row_q3_K`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d_all = f16_le(x[D_OFFSET], x[D_OFFSET + 1]);
        let mut packed = [0u8; 12];
        packed.copy_from_slice(&x[SCALES_OFFSET..SCALES_OFFSET + 12]);
        let scales = unpack_scales_ggml(&packed);
        let hm = &x[HMASK_OFFSET..HMASK_OFFSET + 32];
        // ggml advances pointers `q += 32` and `y++`; these are the same offsets.
        let mut q = QS_OFFSET;
        let mut yo = 0usize;
        let mut m: u8 = 1;
        let mut is = 0usize;
        for _n in (0..BLOCK_ELEMS).step_by(128) {
            let mut shift = 0u32;
            for _j in 0..4 {
                let dl: f32 = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let v =
                        ((x[q + l] >> shift) & 3) as i8 as i32 - if hm[l] & m != 0 { 0 } else { 4 };
                    y[yo] = dl * v as f32;
                    yo += 1;
                }

                let dl: f32 = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let v = ((x[q + l + 16] >> shift) & 3) as i8 as i32
                        - if hm[l + 16] & m != 0 { 0 } else { 4 };
                    y[yo] = dl * v as f32;
                    yo += 1;
                }

                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

/// One block of the fast path: the sixteen `dl = d_all * (raw - 32)` once (the reference's
/// products), then four 16-lane loops over fixed-size arrays (each `qs` byte read once, its four
/// 2-bit fields written to four sub-blocks). The quant `low - (high ? 0 : 4)` is computed
/// without a branch as `(low | high << 2) - 4`, the same integer.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d_all = f16_le(x[D_OFFSET], x[D_OFFSET + 1]);
    let packed: &[u8; 12] = x[SCALES_OFFSET..].first_chunk().expect("inside the block");
    let mut dl = [0f32; 16];
    for (k, dl) in dl.iter_mut().enumerate() {
        *dl = d_all * (scale_raw(packed, k) as i32 - 32) as f32;
    }
    // Byte l of qs[32n + 16h ..] and of hmask[16h ..] (l in 0..16) hold the quants of elements
    // 128n + 32k + 16h + l, k in 0..4 (low bits 2k, 2k+1; high bit 4n + k), of sub-block
    // s = 8n + 2k + h: one 16-lane loop per (n, h) reads each byte once and writes the four
    // elements.
    for n in 0..2 {
        for h in 0..2 {
            let q: &[u8; 16] = x[QS_OFFSET + 32 * n + 16 * h..]
                .first_chunk()
                .expect("inside the block");
            let hm: &[u8; 16] = x[HMASK_OFFSET + 16 * h..]
                .first_chunk()
                .expect("inside the block");
            let s = 8 * n + h;
            let (a0, a1, a2, a3) = (dl[s], dl[s + 2], dl[s + 4], dl[s + 6]);
            let o = 128 * n + 16 * h;
            for l in 0..16 {
                let b = q[l] as i32;
                // This half's four high bits; each goes to bit 2: q + 4 = low | high << 2.
                let hb = (hm[l] as i32) >> (4 * n);
                y[o + l] = a0 * (((b & 3) | ((hb & 1) << 2)) - 4) as f32;
                y[o + 32 + l] = a1 * ((((b >> 2) & 3) | ((hb & 2) << 1)) - 4) as f32;
                y[o + 64 + l] = a2 * ((((b >> 4) & 3) | (hb & 4)) - 4) as f32;
                y[o + 96 + l] = a3 * ((((b >> 6) & 3) | ((hb & 8) >> 1)) - 4) as f32;
            }
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
