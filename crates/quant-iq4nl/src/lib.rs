#![doc = include_str!("../LAYOUT.md")]
//!
//! ## This crate
//!
//! [`IQ4NLFormat`] implements [`quant_core::QuantFormat`]; its instance [`IQ4_NL`] is registered
//! in quant-core's registry. The CPU reference follows ggml's loop literally; the fast path works
//! on whole blocks held in fixed-size arrays, with the same operations, so that LLVM vectorizes
//! it (the dispatched AVX2 build gathers the table values 8 lanes at a time). The GPU kernels are
//! in `kernel.hip`, on the shared skeleton of `kernels/qf_portability.h`; they look the value
//! table up in a shared-memory copy.
#![warn(missing_docs)]

use quant_core::cpu::f16_le;
use quant_core::{GgmlType, KernelSpec};
use quant_tables::KVALUES_IQ4NL;

/// Elements per block (ggml's `QK4_NL`).
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: an f16 scale and 16 bytes of 4-bit indices.
pub const BLOCK_BYTES: usize = 18;

/// The layout page (the text of this crate's documentation).
pub const LAYOUT_DOC: &str = include_str!("../LAYOUT.md");

/// The GPU kernels of `kernel.hip`, after the `kvalues_iq4nl` table fragment.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "iq4_nl", file: "quant-iq4nl/kernel.hip",
    source: quant_tables::kernel_source!(["kvalues_iq4nl"], "../kernel.hip"),
    threads: 256, blocks_per_group: 256,
    geometry: (BLOCK_ELEMS, BLOCK_BYTES),
};

quant_core::define_format! {
    /// ggml's IQ4_NL format (type 20): blocks of 32 four-bit indices into the non-linear table
    /// `kvalues_iq4nl`, sharing one f16 scale.
    pub struct IQ4NLFormat;
    /// The registered [`IQ4NLFormat`] instance.
    pub static IQ4_NL;
    ty: GgmlType::IQ4_NL, name: "IQ4_NL", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
    layout: LAYOUT_DOC, reference: reference, fast: fast,
    kernel: Some(&KERNEL), f16_scales: &[0],
}

/// The reference: ggml's `dequantize_row_iq4_nl`, statement for statement.
fn reference(src: &[u8], dst: &mut [f32]) {
    const QK: usize = BLOCK_ELEMS;
    for (x, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let qs = &x[2..];
        let d = f16_le(x[0], x[1]);
        for j in 0..QK / 2 {
            y[j] = d * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
            y[j + QK / 2] = d * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
        }
    }
}

/// One block of the fast path: the reference's operations on fixed-size arrays (no bounds
/// checks, constant trip counts), both 16-element halves built in registers and stored whole.
#[inline(always)]
fn block_fast(x: &[u8; BLOCK_BYTES], y: &mut [f32; BLOCK_ELEMS]) {
    let d = f16_le(x[0], x[1]);
    let mut lo = [0f32; 16];
    let mut hi = [0f32; 16];
    for j in 0..16 {
        let q = x[2 + j];
        lo[j] = d * KVALUES_IQ4NL[(q & 0xf) as usize] as f32;
        hi[j] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
    y[..16].copy_from_slice(&lo);
    y[16..].copy_from_slice(&hi);
}

quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);

#[cfg(test)]
mod tests;
