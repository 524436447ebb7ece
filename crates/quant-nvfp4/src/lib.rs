#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`NVFP4Format`] implements [`quant_core::QuantFormat`]; its instance [`NVFP4`] is registered in
//! quant-core's registry. Its scale is not an f16 field, so it gives `define_format!` its own
//! `make_scales_finite` rule. The CPU reference follows ggml's loop literally; the fast path reads the four scales
//! from a 256-entry table of their bits (built at compile time with integer operations, and held
//! to the reference's decoding for every byte by a test), then computes each table value from
//! its code with integer operations on fixed-size arrays, so that LLVM vectorizes it (the same
//! integers and scales, so the same bits). The GPU kernels are in `kernel.hip`, on the shared
//! skeleton of `kernels/qf_portability.h`; they look the value table up in a shared-memory copy.
#![warn(missing_docs)]

use quant_core::{GgmlType, KernelSpec};
use quant_tables::KVALUES_MXFP4;

/// Elements per block (ggml's `QK_NVFP4`).
pub const BLOCK_ELEMS: usize = 64;
/// Bytes per block: four UE4M3 scale bytes and 32 bytes of 4-bit codes.
pub const BLOCK_BYTES: usize = 36;
/// Elements per sub-block, each with its own scale (ggml's `QK_NVFP4_SUB`).
pub const SUB_ELEMS: usize = 16;

/// Byte offset of `qs[32]`.
const QS: usize = 4;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, after the `kvalues_mxfp4` table fragment.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "nvfp4", file: "quant-nvfp4/kernel.hip",
    source: quant_tables::kernel_source!(["kvalues_mxfp4"], "../kernel.hip"),
    threads: 256, blocks_per_group: 128,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's NVFP4 format (type 40): blocks of 64 E2M1 codes in four sub-blocks of 16, each with
    /// its own UE4M3 scale.
    pub struct NVFP4Format;
    /// The registered [`NVFP4Format`] instance.
    pub static NVFP4;
    ty: GgmlType::NVFP4, name: "NVFP4", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[],
    make_scales_finite: finite_scales,
}

/// `make_scales_finite` (the block's scales are UE4M3 bytes, not f16 fields): rewrites each
/// block's four scale bytes with [`finite_scale`] (finite, non-zero, normal scales in
/// `2^-7 ..= 0.9375`); the codes are left alone (every code is finite).
fn finite_scales(blocks: &mut [u8]) {
    for block in blocks.chunks_exact_mut(BLOCK_BYTES) {
        for b in &mut block[..4] {
            *b = finite_scale(*b);
        }
    }
}

/// The UE4M3 byte `make_scales_finite` writes for scale byte `x`: mantissa kept,
/// exponent forced into `1..=7` (`1 + exp % 7`), bit 7 cleared; it decodes to
/// `(8 + man) * 2^(exp - 11)`, between `2^-7` and `0.9375`.
pub const fn finite_scale(x: u8) -> u8 {
    ((1 + ((x >> 3) & 0xF) % 7) << 3) | (x & 7)
}

/// `x * 2^e` for the `e` of [`ue4m3_to_fp32`] (`-9..=8`): C's `ldexpf`, exact here (no overflow,
/// no subnormal result).
#[inline(always)]
fn ldexpf(x: f32, e: i32) -> f32 {
    x * f32::from_bits(((127 + e) as u32) << 23)
}

/// ggml's `ggml_ue4m3_to_fp32` (ggml-impl.h, the CPU's definition): the UE4M3 byte `x` decoded
/// and halved, bit 7 ignored except that `0x7F` (like `0x00`) gives `0.0`.
pub fn ue4m3_to_fp32(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = ((x >> 3) & 0xF) as i32;
    let man = (x & 0x7) as i32;
    let raw = if exp == 0 {
        ldexpf(man as f32, -9)
    } else {
        ldexpf(1.0 + man as f32 / 8.0, exp - 7)
    };
    raw * 0.5
}

/// The f32 bits of [`ue4m3_to_fp32`]`(x)`, computed with integer operations only (so at compile
/// time): `(8 + man) * 2^(exp - 11)` is the normal f32 with biased exponent `exp + 119` and
/// mantissa `man << 20`; `man * 2^-10` (`exp = 0`) is normalized by hand.
const fn ue4m3_half_bits(x: u8) -> u32 {
    if x == 0 || x == 0x7F {
        return 0;
    }
    let exp = ((x >> 3) & 0xF) as u32;
    let man = (x & 7) as u32;
    if exp != 0 {
        return ((exp + 119) << 23) | (man << 20);
    }
    if man == 0 {
        return 0;
    }
    let p = 31 - man.leading_zeros(); // man = 2^p + rest, p in 0..=2
    ((117 + p) << 23) | ((man - (1 << p)) << (23 - p))
}

/// [`ue4m3_half_bits`] of every byte: the fast path's scale table.
static UE4M3_HALF_BITS: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ue4m3_half_bits(i as u8);
        i += 1;
    }
    t
};

/// The reference: ggml's `dequantize_row_nvfp4`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    const QK_SUB: usize = SUB_ELEMS;
    const N_SUB: usize = BLOCK_ELEMS / SUB_ELEMS;
    for (x, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let qs = &x[QS..];
        for s in 0..N_SUB {
            let d = ue4m3_to_fp32(x[s]);
            let yb = &mut y[s * QK_SUB..(s + 1) * QK_SUB];
            for j in 0..QK_SUB / 2 {
                let v0 = KVALUES_MXFP4[(qs[s * (QK_SUB / 2) + j] & 0x0F) as usize];
                let v1 = KVALUES_MXFP4[(qs[s * (QK_SUB / 2) + j] >> 4) as usize];
                yb[j] = v0 as f32 * d;
                yb[j + QK_SUB / 2] = v1 as f32 * d;
            }
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

/// One block of the fast path: the four scales from the table, the codes unpacked into a
/// fixed-size array in element order, then the reference's `(float)value * d` on every lane.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d: [f32; 4] = std::array::from_fn(|s| f32::from_bits(UE4M3_HALF_BITS[x[s] as usize]));
    let mut code = [0i32; BLOCK_ELEMS];
    for s in 0..4 {
        for j in 0..8 {
            let q = x[QS + 8 * s + j];
            code[16 * s + j] = (q & 0x0F) as i32;
            code[16 * s + j + 8] = (q >> 4) as i32;
        }
    }
    for s in 0..4 {
        for j in 0..SUB_ELEMS {
            y[16 * s + j] = e2m1_doubled(code[16 * s + j]) as f32 * d[s];
        }
    }
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
