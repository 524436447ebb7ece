//! # quant-synth
//!
//! Synthetic GGUF models for loader benchmarks: real architectures' tensor names, shapes and
//! metadata, llama.cpp's per-tensor type mixes, and random quantized blocks whose scales are
//! finite, so that every tensor dequantizes to finite values.
//!
//! * [`plan`] turns an [`Arch`], a [`Size`] preset and a [`Mix`] into a [`ModelPlan`]: every
//!   tensor's name, shape (ggml order) and type, the metadata a llama loader expects, the total
//!   size and the parameter count. Architectures are data ([`Shape`]), not code paths.
//! * [`write()`] streams a plan to a GGUF file chunk by chunk (a few MB in memory whatever the
//!   model size), generating the bytes in parallel with a fast xorshift generator.
//! * [`SCALE_FIELDS`] is the one piece of format knowledge here: where each block type keeps
//!   its f16 scales, so that they can be overwritten with finite values.
//!
//! There is no tokenizer in the files: the point is to load weights, not to run the model.
//!
//! ```
//! use quant_synth::{plan, write, Arch, Mix, Size};
//! let p = plan(Arch::Llama, Size::TestTiny, Mix::Q4KM);
//! assert_eq!(p.tensors.len(), 21);
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("tiny.gguf");
//! let mut done = 0;
//! write(&p, &path, 42, &mut |bytes| done = bytes)?;
//! assert_eq!(done, p.total_bytes());
//! let f = quant_gguf::GgufFile::open(&path)?;
//! assert_eq!(f.tensor("output.weight").unwrap().ty, quant_core::GgmlType::Q6_K);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod arch;
mod error;
mod fill;
mod mix;
mod plan;
mod write;

pub use arch::{Arch, Shape, Size};
pub use error::SynthError;
pub use fill::{fill_tensor_chunk, supported_type, SCALE_FIELDS};
pub use mix::{k_quant_fallback, use_more_bits, Mix};
pub use plan::{plan, ModelPlan, TensorPlan};
pub use write::{write, write_to};
