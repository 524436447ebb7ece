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
pub use synth::random_bytes;

#[doc(hidden)]
pub use inventory;

/// The portability header every kernel source includes as `"qf_portability.h"`.
pub const PORTABILITY_HEADER: &str = include_str!("../../../kernels/qf_portability.h");

/// File name under which kernel sources include [`PORTABILITY_HEADER`].
pub const PORTABILITY_HEADER_NAME: &str = "qf_portability.h";
