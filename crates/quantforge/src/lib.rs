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
#[cfg(feature = "iq1m")]
pub extern crate quant_iq1m;
#[cfg(feature = "iq1s")]
pub extern crate quant_iq1s;
#[cfg(feature = "iq2s")]
pub extern crate quant_iq2s;
#[cfg(feature = "iq2xs")]
pub extern crate quant_iq2xs;
#[cfg(feature = "iq2xxs")]
pub extern crate quant_iq2xxs;
#[cfg(feature = "iq3s")]
pub extern crate quant_iq3s;
#[cfg(feature = "iq3xxs")]
pub extern crate quant_iq3xxs;
#[cfg(feature = "iq4nl")]
pub extern crate quant_iq4nl;
#[cfg(feature = "iq4xs")]
pub extern crate quant_iq4xs;
#[cfg(feature = "mxfp4")]
pub extern crate quant_mxfp4;
#[cfg(feature = "nvfp4")]
pub extern crate quant_nvfp4;
#[cfg(feature = "q1_0")]
pub extern crate quant_q1_0;
#[cfg(feature = "q2_0")]
pub extern crate quant_q2_0;
#[cfg(feature = "q2k")]
pub extern crate quant_q2k;
#[cfg(feature = "q3k")]
pub extern crate quant_q3k;
#[cfg(feature = "q4_0")]
pub extern crate quant_q4_0;
#[cfg(feature = "q4_1")]
pub extern crate quant_q4_1;
#[cfg(feature = "q4k")]
pub extern crate quant_q4k;
#[cfg(feature = "q5_0")]
pub extern crate quant_q5_0;
#[cfg(feature = "q5_1")]
pub extern crate quant_q5_1;
#[cfg(feature = "q5k")]
pub extern crate quant_q5k;
#[cfg(feature = "q6k")]
pub extern crate quant_q6k;
#[cfg(feature = "q8_0")]
pub extern crate quant_q8_0;
#[cfg(feature = "tq1_0")]
pub extern crate quant_tq1_0;
#[cfg(feature = "tq2_0")]
pub extern crate quant_tq2_0;

pub use quant_gpu as gpu;
pub use quant_loader as loader;

pub mod device;
