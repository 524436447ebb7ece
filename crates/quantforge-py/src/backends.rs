//! One backend per GPU per process, shared by every `File` and kept alive by every `Tensor` on
//! it: kernels are compiled (NVRTC) or loaded once per device, not once per file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use quant_gpu::{Backend, DeviceKind, DeviceSpec, GpuError};

type Key = (DeviceKind, usize);

static BACKENDS: OnceLock<Mutex<HashMap<Key, Arc<dyn Backend>>>> = OnceLock::new();

/// The cubins the wheel ships (`quantforge/kernels/<format>/sm_XX.cubin`), set once by the
/// package's `__init__`.
static PREBUILT: Mutex<Option<PathBuf>> = parking_lot::const_mutex(None);

/// Makes CUDA backends opened from now on use the cubins under `dir` where one fits the device
/// (`quant_cuda::CudaBackend::with_prebuilt_cubins`), so that no kernel waits for NVRTC, and
/// none is lost where NVRTC is not installed.
pub(crate) fn set_prebuilt_cubins(dir: PathBuf) {
    *PREBUILT.lock() = Some(dir);
}

/// Opens device `key`: CUDA with the shipped cubins where they are, anything else as the
/// facade opens it.
fn open_device(key: Key) -> Result<Option<Box<dyn Backend>>, GpuError> {
    if let (DeviceKind::Cuda, Some(dir)) = (key.0, PREBUILT.lock().clone()) {
        let backend = quant_cuda::CudaBackend::new(key.1)?.with_prebuilt_cubins(dir);
        return Ok(Some(Box::new(backend)));
    }
    quantforge::device::open(DeviceSpec::Gpu(key.0, key.1))
}

/// The backend of the device `spec` names, opened on first use; `None` for the CPU (asked for,
/// or `auto` with no GPU present). `auto` takes the first CUDA device, else the first HIP one.
pub(crate) fn open(spec: DeviceSpec) -> Result<Option<Arc<dyn Backend>>, GpuError> {
    let key = match spec {
        DeviceSpec::Cpu => return Ok(None),
        DeviceSpec::Gpu(kind, ordinal) => (kind, ordinal),
        DeviceSpec::Auto => {
            let kind = [DeviceKind::Cuda, DeviceKind::Hip]
                .into_iter()
                .find(|&k| quantforge::device::count(k).unwrap_or(0) > 0);
            match kind {
                Some(kind) => (kind, 0),
                None => return Ok(None),
            }
        }
    };
    // Held while opening, so that two threads asking for the same device open it once.
    let mut map = BACKENDS.get_or_init(Default::default).lock();
    if let Some(b) = map.get(&key) {
        return Ok(Some(b.clone()));
    }
    let backend: Arc<dyn Backend> = match open_device(key)? {
        Some(b) => Arc::from(b),
        None => {
            return Err(GpuError::NoDevice {
                kind: key.0,
                ordinal: key.1,
                reason: "the device opened as the CPU".into(),
            })
        }
    };
    map.insert(key, backend.clone());
    Ok(Some(backend))
}
