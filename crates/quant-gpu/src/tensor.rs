//! [`DeviceTensor`]: a tensor in device memory, dequantized or kept in its quantized blocks.

use quant_core::GgmlType;

use crate::{Backend, Buffer, DeviceKind, GpuError, OutputDType, RawAllocation};

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

    /// Device address of the tensor's first byte. See [`Buffer::device_ptr`] for what is valid
    /// where; values are in ggml's element order (innermost dimension fastest), so a 2-D weight
    /// of GGUF shape `[ne0, ne1]` is a row-major `ne1 × ne0` matrix at this address.
    pub fn device_ptr(&self) -> u64 {
        self.buffer.device_ptr()
    }

    /// Vendor API and ordinal of the device holding the tensor.
    pub fn device(&self) -> (DeviceKind, usize) {
        self.buffer.device()
    }

    /// Gives the tensor's memory up to the caller, who frees it from now on (see
    /// [`Buffer::into_raw`]). A tensor shared through an `Arc` (as the loader's cache returns
    /// them) is first taken out with `Arc::try_unwrap` once no one else holds it.
    pub fn into_raw(self) -> RawDeviceTensor {
        RawDeviceTensor {
            allocation: self.buffer.into_raw(),
            shape: self.shape,
            dtype: self.dtype,
        }
    }

    /// Copies the tensor to the host: little-endian values of its type, or the blocks.
    pub fn download(&self, backend: &dyn Backend) -> Result<Vec<u8>, GpuError> {
        let mut out = vec![0u8; self.bytes() as usize];
        backend.download(&self.buffer, &mut out)?;
        Ok(out)
    }
}

/// A tensor whose memory the caller now owns ([`DeviceTensor::into_raw`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawDeviceTensor {
    /// The memory, and who frees it.
    pub allocation: RawAllocation,
    /// Dimensions, ggml order (innermost first).
    pub shape: Vec<u64>,
    /// What the memory holds.
    pub dtype: TensorDType,
}
