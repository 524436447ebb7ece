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

/// Parses a comma-separated `--device` list (`cuda:0,cuda:1`). A single entry parses as
/// [`DeviceSpec`] does.
pub fn parse_list(s: &str) -> Result<Vec<DeviceSpec>, quant_gpu::DeviceSpecError> {
    s.split(',').map(|p| p.trim().parse()).collect()
}

/// Opens every GPU of a list (for loading a model across them). `auto` and `cpu` are not
/// GPUs: a list holding them is refused with [`GpuError::NoDevice`].
pub fn open_all(specs: &[DeviceSpec]) -> Result<Vec<Box<dyn Backend>>, GpuError> {
    specs
        .iter()
        .map(|s| match *s {
            DeviceSpec::Gpu(kind, ordinal) => open_gpu(kind, ordinal),
            _ => Err(GpuError::NoDevice {
                kind: DeviceKind::Cuda,
                ordinal: 0,
                reason: format!("'{s}' in a list of devices: name GPUs (cuda:N, hip:N)"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_parse_and_refuse_non_gpus() {
        let l = parse_list("cuda:0, cuda:1").unwrap();
        assert_eq!(
            l,
            vec![
                DeviceSpec::Gpu(DeviceKind::Cuda, 0),
                DeviceSpec::Gpu(DeviceKind::Cuda, 1)
            ]
        );
        assert_eq!(
            parse_list("hip:1").unwrap(),
            vec![DeviceSpec::Gpu(DeviceKind::Hip, 1)]
        );
        assert!(parse_list("cuda:0,gpu:1").is_err());
        let e = open_all(&[DeviceSpec::Cpu])
            .err()
            .expect("cpu is not a GPU");
        assert!(e.to_string().contains("name GPUs"), "{e}");
    }
}
