#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`MXFP4Format`] implements [`quant_core::QuantFormat`]; its instance [`MXFP4`] is registered in
//! quant-core's registry. Its scale is not an f16 field, so it gives `define_format!` its own
//! `make_scales_finite` rule. The CPU reference follows ggml's loop literally; the fast path works on fixed-size
//! arrays and computes each table value from its code with integer operations instead of a
//! lookup, so that LLVM vectorizes it (the same integers, so the same bits). The GPU kernels are
//! in `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`; they look the value
//! table up in a shared-memory copy.
#![warn(missing_docs)]

use quant_core::{GgmlType, KernelSpec};
use quant_tables::KVALUES_MXFP4;

/// Elements per block (ggml's `QK_MXFP4`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: an E8M0 scale byte and 16 bytes of 4-bit codes.
pub const BLOCK_BYTES: usize = 17;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, after the `kvalues_mxfp4` table fragment.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "mxfp4", file: "quant-mxfp4/kernel.hip",
    source: quant_tables::kernel_source!(["kvalues_mxfp4"], "../kernel.hip"),
    threads: 256, blocks_per_group: 256,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

/// The E8M0 exponents `make_scales_finite` writes: `118..=128`, scales
/// `2^-10 ..= 2^0` (so elements within ±12).
pub const FINITE_EXPONENTS: std::ops::RangeInclusive<u8> = 118..=128;

quant_core::define_format! {
    /// ggml's MXFP4 format (type 39): blocks of 32 E2M1 codes sharing one E8M0 (power-of-two)
    /// scale.
    pub struct MXFP4Format;
    /// The registered [`MXFP4Format`] instance.
    pub static MXFP4;
    ty: GgmlType::MXFP4, name: "MXFP4", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[],
    make_scales_finite: finite_scales,
}

/// `make_scales_finite` (the block's scale is an E8M0 byte, not an f16 field): maps each
/// block's scale byte into [`FINITE_EXPONENTS`] (`118 + e % 11`); the codes are left alone
/// (every code is finite).
fn finite_scales(blocks: &mut [u8]) {
    for block in blocks.chunks_exact_mut(BLOCK_BYTES) {
        block[0] = finite_exponent(block[0]);
    }
}

/// The E8M0 exponent `make_scales_finite` writes for scale byte `e`.
const fn finite_exponent(e: u8) -> u8 {
    *FINITE_EXPONENTS.start() + e % (*FINITE_EXPONENTS.end() - *FINITE_EXPONENTS.start() + 1)
}

/// ggml's `ggml_e8m0_to_fp32_half`: `2^(e - 128)` from its bits (a subnormal for `e < 2`).
#[inline(always)]
pub fn e8m0_to_fp32_half(e: u8) -> f32 {
    let bits: u32 = if e < 2 {
        0x0020_0000 << e
    } else {
        ((e - 1) as u32) << 23
    };
    f32::from_bits(bits)
}

/// The reference: ggml's `dequantize_row_mxfp4`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    const QK: usize = BLOCK_ELEMS;
    for (x, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let qs = &x[1..];
        let d = e8m0_to_fp32_half(x[0]);
        for j in 0..QK / 2 {
            let x0 = KVALUES_MXFP4[(qs[j] & 0x0F) as usize];
            let x1 = KVALUES_MXFP4[(qs[j] >> 4) as usize];
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// `kvalues_mxfp4[code]` for a code in `0..16`, computed with integer operations that LLVM
/// vectorizes: magnitude `m` for `m = code & 7` up to 4, then 6, 8, 12 (`m + max(m - 4, 0) +
/// 2 max(m - 6, 0)`), negated when bit 3 is set (code 8 gives the integer 0). A test holds it to
/// the table for every code.
#[inline(always)]
fn e2m1_doubled(code: i32) -> i32 {
    let m = code & 7;
    let mag = m + (m - 4).max(0) + 2 * (m - 6).max(0);
    let neg = -((code >> 3) & 1); // 0 or -1
    (mag ^ neg) - neg
}

/// One block of the fast path: the codes unpacked into a fixed-size array, then the
/// reference's `(float)value * d` on every lane.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = e8m0_to_fp32_half(x[0]);
    let mut code = [0i32; BLOCK_ELEMS];
    for j in 0..16 {
        code[j] = (x[1 + j] & 0x0F) as i32;
        code[j + 16] = (x[1 + j] >> 4) as i32;
    }
    for j in 0..BLOCK_ELEMS {
        y[j] = e2m1_doubled(code[j]) as f32 * d;
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
