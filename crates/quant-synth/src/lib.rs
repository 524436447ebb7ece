//! # quant-synth
//!
//! Synthetic GGUF models for loader benchmarks: real architectures' tensor names, shapes and
//! metadata, llama.cpp's per-tensor type mixes, and random quantized blocks whose scales are
//! finite, so that every tensor dequantizes to finite values.
//!
//! * [`plan`] turns an [`Arch`] (llama, or the gpt-oss mixture of experts), a [`Size`] preset
//!   and a [`Mix`] into a [`ModelPlan`]: every tensor's name, shape (ggml order) and type, the
//!   metadata a loader of that architecture expects, the total size and the parameter count; a
//!   size or mix the architecture does not have is refused ([`SynthError::NotOffered`]).
//!   Architectures are data ([`Shape`]) and a tensor list each.
//! * [`write()`] streams a plan to a GGUF file chunk by chunk (a few MB in memory whatever the
//!   model size), generating the bytes in parallel with a fast xorshift generator.
//! * [`fill_tensor_chunk`] makes a chunk of random data whose values are all finite. It holds no
//!   format knowledge: a quantized type's random blocks go through its registered format's
//!   `QuantFormat::make_scales_finite`. This crate links no format crate; the binary that uses it
//!   links them (the `quantforge` facade does), and a quantized type whose format is not linked
//!   is refused ([`SynthError::UnsupportedType`]).
//!
//! There is no tokenizer in the files: the point is to load weights, not to run the model.
//!
//! ```
//! # use quant_q4k as _; use quant_q6k as _; // link the formats the mix needs
//! use quant_synth::{plan, write, Arch, Mix, Size};
//! let p = plan(Arch::Llama, Size::TestTiny, Mix::Q4KM)?;
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
pub use fill::{fill_tensor_chunk, supported_type};
pub use mix::{k_quant_fallback, use_more_bits, Mix};
pub use plan::{plan, ModelPlan, TensorPlan};
pub use write::{write, write_to};

/// Links every format crate into the unit tests' registry (dev-dependencies; some may still be
/// stubs that register nothing), and checks that the formats a test needs are there.
#[cfg(test)]
pub(crate) mod linked_formats {
    use quant_float as _;
    use quant_q1_0 as _;
    use quant_q2_0 as _;
    use quant_q2k as _;
    use quant_q3k as _;
    use quant_q4_0 as _;
    use quant_q4_1 as _;
    use quant_q4k as _;
    use quant_q5_0 as _;
    use quant_q5_1 as _;
    use quant_q5k as _;
    use quant_q6k as _;
    use quant_q8_0 as _;

    use quant_core::GgmlType;

    /// The formats every unit test may rely on (complete format crates).
    pub(crate) const REQUIRED: [GgmlType; 4] = [
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
    ];

    /// Panics unless every type of [`REQUIRED`] has a registered format.
    pub(crate) fn require() {
        if let Err(e) = quant_core::registry().require(&REQUIRED) {
            panic!("the unit tests need these formats linked: {e}");
        }
    }

    /// A quantized ggml type that no linked format handles.
    pub(crate) fn unlinked_quantized_type() -> GgmlType {
        (0..64)
            .map(GgmlType)
            .find(|t| {
                t.geometry().is_some_and(|g| g.is_quantized()) && quant_core::lookup(*t).is_none()
            })
            .expect("some quantized ggml type has no format in quantforge")
    }
}
