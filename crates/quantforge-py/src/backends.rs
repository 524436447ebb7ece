//! One backend per GPU per process, shared by every `File` and kept alive by every `Tensor` on
//! it: kernels are compiled (NVRTC) or loaded once per device, not once per file.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use quant_gpu::{Backend, DeviceKind, DeviceSpec, GpuError};

type Key = (DeviceKind, usize);

static BACKENDS: OnceLock<Mutex<HashMap<Key, Arc<dyn Backend>>>> = OnceLock::new();

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
    let backend: Arc<dyn Backend> = match quantforge::device::open(DeviceSpec::Gpu(key.0, key.1))? {
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
