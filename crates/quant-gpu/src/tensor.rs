//! [`DeviceTensor`]: dequantized values on a device.

use crate::{Backend, Buffer, GpuError, OutputDType};

/// A dequantized tensor in device memory: f32, f16 or bf16 values in ggml's element order.
#[derive(Debug)]
pub struct DeviceTensor {
    /// The device memory holding the values.
    pub buffer: Buffer,
    /// Dimensions, ggml order (innermost first), as in the GGUF file.
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: OutputDType,
}

impl DeviceTensor {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Bytes of the values.
    pub fn bytes(&self) -> u64 {
        self.elements() * self.dtype.size() as u64
    }

    /// Copies the values to the host as little-endian bytes of `dtype`.
    pub fn download(&self, backend: &dyn Backend) -> Result<Vec<u8>, GpuError> {
        let mut out = vec![0u8; self.bytes() as usize];
        backend.download(&self.buffer, &mut out)?;
        Ok(out)
    }
}
