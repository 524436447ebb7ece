//! # quantforge
//!
//! Facade crate: re-exports the parts of quantforge and links the format crates that its Cargo
//! features enable, so that their registrations reach the [registry](quant_core::registry()).
#![warn(missing_docs)]

pub use quant_core as core;
pub use quant_gguf as gguf;

// Force-link every enabled format crate: a crate nothing names is dropped by the linker and its
// `inventory` registration with it.
#[cfg(feature = "float")]
pub extern crate quant_float;
#[cfg(feature = "q4_0")]
pub extern crate quant_q4_0;
#[cfg(feature = "q4k")]
pub extern crate quant_q4k;
#[cfg(feature = "q6k")]
pub extern crate quant_q6k;

pub use quant_gpu as gpu;
pub use quant_loader as loader;

pub mod device;
