//! [`DeviceTensor`]: a tensor in device memory, dequantized or kept in its quantized blocks.

use quant_core::GgmlType;

use crate::{Backend, Buffer, GpuError, OutputDType};

/// What a [`DeviceTensor`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorDType {
    /// Dequantized values of this type, in ggml's element order.
    Values(OutputDType),
    /// The file's bytes untouched: whole blocks of this GGML type (for engines whose kernels
    /// read quantized weights directly).
    Native(GgmlType),
}

impl TensorDType {
    /// Short name: `"f16"`, or `"native"` for kept blocks.
    pub fn name(self) -> &'static str {
        match self {
            TensorDType::Values(d) => d.name(),
            TensorDType::Native(_) => "native",
        }
    }
}

impl From<OutputDType> for TensorDType {
    fn from(d: OutputDType) -> Self {
        TensorDType::Values(d)
    }
}

impl PartialEq<OutputDType> for TensorDType {
    fn eq(&self, other: &OutputDType) -> bool {
        *self == TensorDType::Values(*other)
    }
}

impl std::fmt::Display for TensorDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorDType::Values(d) => f.write_str(d.name()),
            TensorDType::Native(t) => write!(f, "native {t}"),
        }
    }
}

/// A tensor in device memory: f32, f16 or bf16 values in ggml's element order, or (with
/// [`TensorDType::Native`]) the file's quantized blocks.
#[derive(Debug)]
pub struct DeviceTensor {
    /// The device memory holding the tensor.
    pub buffer: Buffer,
    /// Dimensions, ggml order (innermost first), as in the GGUF file.
    pub shape: Vec<u64>,
    /// What the buffer holds.
    pub dtype: TensorDType,
}

impl DeviceTensor {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Bytes of the tensor on the device.
    pub fn bytes(&self) -> u64 {
        match self.dtype {
            TensorDType::Values(d) => self.elements() * d.size() as u64,
            TensorDType::Native(t) => t
                .geometry()
                .map(|g| self.elements() / g.block_elems as u64 * g.block_bytes as u64)
                .unwrap_or(self.buffer.len() as u64),
        }
    }

    /// Copies the tensor to the host: little-endian values of its type, or the blocks.
    pub fn download(&self, backend: &dyn Backend) -> Result<Vec<u8>, GpuError> {
        let mut out = vec![0u8; self.bytes() as usize];
        backend.download(&self.buffer, &mut out)?;
        Ok(out)
    }
}
