//! # quant-core
//!
//! The contract between quantforge's parts:
//!
//! * [`GgmlType`]: ggml's tensor type ids (an open `u32` newtype) with their block geometry;
//! * [`QuantFormat`]: what a format crate implements (CPU reference, fast path, layout docs,
//!   GPU kernel source and entry points);
//! * the [registry](registry()): every linked format, found by type id, built with `inventory`;
//! * [`cpu`]: checked CPU entry points that spread a format's fast path over all cores.
//!
//! This crate depends on no other quantforge crate, and every other crate may depend on it.
#![warn(missing_docs)]

pub mod conformance;
pub mod cpu;
mod error;
mod format;
mod ggml_type;
mod registry;
mod synth;

pub use error::CoreError;
pub use format::{KernelSpec, OutputDType, QuantFormat};
pub use ggml_type::{BlockGeometry, GgmlType};
pub use registry::{lookup, registry, FormatRegistration, Registry};
pub use synth::{finite_f16, random_bytes};

#[doc(hidden)]
pub use inventory;

/// Defines a format's fast path from its per-block function: `fast(src, dst)` runs
/// `block(&[u8; BYTES], &mut [f32; ELEMS])` over every whole block, and `baseline(src, dst)` is the
/// same loop for the baseline instruction set only (for tests that hold the two builds to each
/// other).
///
/// ```ignore
/// quant_core::block_fast_path!(fast, fast_baseline, block_fast, BLOCK_BYTES, BLOCK_ELEMS);
/// ```
///
/// The loop is compiled twice, for the baseline instruction set and for AVX2, and the AVX2 copy
/// is picked at run time where the CPU has it (checked once, cached by std). `block` works on
/// fixed-size arrays so that LLVM vectorizes it without bounds checks; mark it
/// `#[inline(always)]` so that it is compiled into each copy. AVX2 adds no fused multiply-add and
/// LLVM never contracts without fast-math flags, so both copies give the same bits. A trailing
/// partial block, or a length mismatch between `src` and `dst`, is left alone.
///
/// It is a macro rather than a generic function because a block function passed as a value is
/// called through a shim that LLVM does not inline into the AVX2 copy (measured: no `ymm`
/// instruction in it), which would leave the AVX2 copy scalar.
#[macro_export]
macro_rules! block_fast_path {
    ($fast:ident, $baseline:ident, $block:ident, $bytes:expr, $elems:expr) => {
        /// The fast path over whole blocks, for the baseline instruction set.
        #[inline(always)]
        fn $baseline(src: &[u8], dst: &mut [f32]) {
            for (x, y) in src.chunks_exact($bytes).zip(dst.chunks_exact_mut($elems)) {
                // `chunks_exact` guarantees the lengths; the `if let` only proves it to the
                // compiler.
                if let (Some(x), Some(y)) = (x.first_chunk(), y.first_chunk_mut()) {
                    $block(x, y);
                }
            }
        }

        /// The fast path: AVX2 where the CPU has it, else the baseline build.
        fn $fast(src: &[u8], dst: &mut [f32]) {
            /// The baseline loop compiled for AVX2 (8 lanes).
            ///
            /// # Safety
            /// The CPU must support AVX2.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(src: &[u8], dst: &mut [f32]) {
                $baseline(src, dst)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 support was just detected.
                return unsafe { avx2(src, dst) };
            }
            $baseline(src, dst)
        }
    };
}

/// The portability header every kernel source includes as `"qf_portability.h"`.
pub const PORTABILITY_HEADER: &str = include_str!("../../../kernels/qf_portability.h");

/// File name under which kernel sources include [`PORTABILITY_HEADER`].
pub const PORTABILITY_HEADER_NAME: &str = "qf_portability.h";

/// The NVIDIA compiler flags that keep every kernel bit-exact: no contraction into FMA, no flush
/// of subnormals to zero, IEEE division and square root. NVRTC (quant-cuda, at run time) and
/// nvcc (`cargo xtask build-kernels`, ahead of time) both take exactly these; never fast-math.
pub const NVIDIA_EXACT_FLAGS: [&str; 4] = [
    "--fmad=false",
    "--ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
];
