//! Opening a device from a [`DeviceSpec`] with the backends this build has.

use quant_gpu::{Backend, DeviceKind, DeviceSpec, GpuError};

/// Opens the device `spec` names. `Ok(None)` means the CPU: asked for, or `auto` with no GPU
/// present. `auto` tries CUDA devices first, then HIP, and takes ordinal 0.
pub fn open(spec: DeviceSpec) -> Result<Option<Box<dyn Backend>>, GpuError> {
    match spec {
        DeviceSpec::Cpu => Ok(None),
        DeviceSpec::Gpu(kind, ordinal) => open_gpu(kind, ordinal).map(Some),
        DeviceSpec::Auto => {
            for kind in [DeviceKind::Cuda, DeviceKind::Hip] {
                if count(kind).unwrap_or(0) > 0 {
                    return open_gpu(kind, 0).map(Some);
                }
            }
            Ok(None)
        }
    }
}

/// Number of devices of `kind` (an error when the backend is not compiled in or its runtime is
/// missing).
pub fn count(kind: DeviceKind) -> Result<usize, GpuError> {
    match kind {
        DeviceKind::Cuda => {
            #[cfg(feature = "cuda")]
            return quant_cuda::device_count();
            #[cfg(not(feature = "cuda"))]
            return Err(GpuError::NotCompiled {
                kind,
                feature: "cuda",
            });
        }
        DeviceKind::Hip => {
            #[cfg(feature = "rocm")]
            return quant_rocm::device_count();
            #[cfg(not(feature = "rocm"))]
            return Err(GpuError::NotCompiled {
                kind,
                feature: "rocm",
            });
        }
    }
}

fn open_gpu(kind: DeviceKind, ordinal: usize) -> Result<Box<dyn Backend>, GpuError> {
    let _ = ordinal;
    match kind {
        DeviceKind::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(Box::new(quant_cuda::CudaBackend::new(ordinal)?));
            #[cfg(not(feature = "cuda"))]
            return Err(GpuError::NotCompiled {
                kind,
                feature: "cuda",
            });
        }
        DeviceKind::Hip => {
            #[cfg(feature = "rocm")]
            return Ok(Box::new(quant_rocm::HipBackend::new(ordinal)?));
            #[cfg(not(feature = "rocm"))]
            return Err(GpuError::NotCompiled {
                kind,
                feature: "rocm",
            });
        }
    }
}
