//! Opening a device from a [`DeviceSpec`] with the backends this build has.

use std::path::PathBuf;

use quant_gpu::{Backend, DeviceKind, DeviceSpec, GpuError};

/// How GPUs are opened.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// A folder of ahead-of-time cubins (`<format>/sm_XX.cubin`, as `cargo xtask
    /// build-kernels` writes them): CUDA devices take the best one that fits each format and
    /// compile the rest with NVRTC. `None`: NVRTC, or `QUANTFORGE_CUDA_KERNEL_DIR`.
    pub prebuilt_cubins: Option<PathBuf>,
}

/// Opens the device `spec` names. `Ok(None)` means the CPU: asked for, or `auto` with no GPU
/// present. `auto` tries CUDA devices first, then HIP, and takes ordinal 0.
pub fn open(spec: DeviceSpec) -> Result<Option<Box<dyn Backend>>, GpuError> {
    open_with(spec, &DeviceOptions::default())
}

/// [`open`] with options.
pub fn open_with(
    spec: DeviceSpec,
    options: &DeviceOptions,
) -> Result<Option<Box<dyn Backend>>, GpuError> {
    match resolve(spec) {
        Some((kind, ordinal)) => open_gpu(kind, ordinal, options).map(Some),
        None => Ok(None),
    }
}

/// The GPU `spec` names, `auto` resolved to the first CUDA device, else the first HIP one;
/// `None` for the CPU.
pub fn resolve(spec: DeviceSpec) -> Option<(DeviceKind, usize)> {
    match spec {
        DeviceSpec::Cpu => None,
        DeviceSpec::Gpu(kind, ordinal) => Some((kind, ordinal)),
        DeviceSpec::Auto => [DeviceKind::Cuda, DeviceKind::Hip]
            .into_iter()
            .find(|&k| count(k).unwrap_or(0) > 0)
            .map(|k| (k, 0)),
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

fn open_gpu(
    kind: DeviceKind,
    ordinal: usize,
    options: &DeviceOptions,
) -> Result<Box<dyn Backend>, GpuError> {
    let _ = (ordinal, options);
    match kind {
        DeviceKind::Cuda => {
            #[cfg(feature = "cuda")]
            return open_cuda(ordinal, options);
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

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize, options: &DeviceOptions) -> Result<Box<dyn Backend>, GpuError> {
    let backend = quant_cuda::CudaBackend::new(ordinal)?;
    Ok(match &options.prebuilt_cubins {
        Some(dir) => Box::new(backend.with_prebuilt_cubins(dir.clone())),
        None => Box::new(backend),
    })
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
            DeviceSpec::Gpu(kind, ordinal) => open_gpu(kind, ordinal, &DeviceOptions::default()),
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
