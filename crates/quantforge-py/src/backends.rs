//! One backend per GPU per process, shared by every `File` and kept alive by every `Tensor` on
//! it: kernels are compiled (NVRTC) or loaded once per device, not once per file. The map is
//! never dropped: a forked child must not run the parent's backends' destructors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use quantforge::device::DeviceOptions;
use quantforge::gpu::{Backend, DeviceKind, DeviceSpec, GpuError};

use crate::process;

type Key = (DeviceKind, usize);

static BACKENDS: OnceLock<Mutex<HashMap<Key, Arc<dyn Backend>>>> = OnceLock::new();

/// The cubins the wheel ships (`quantforge/kernels/<format>/sm_XX.cubin`), set once by the
/// package's `__init__`.
static PREBUILT: Mutex<Option<PathBuf>> = parking_lot::const_mutex(None);

/// Makes CUDA backends opened from now on use the cubins under `dir` where one fits the device
/// ([`DeviceOptions::prebuilt_cubins`]), so that no kernel waits for NVRTC, and none is lost
/// where NVRTC is not installed.
pub(crate) fn set_prebuilt_cubins(dir: PathBuf) {
    *PREBUILT.lock() = Some(dir);
}

/// The backend of the device `spec` names, opened on first use; `None` for the CPU (asked for,
/// or `auto` with no GPU present). `auto` takes the first CUDA device, else the first HIP one.
///
/// In a process forked from one that used the GPU, a GPU (or `auto`) is refused before the
/// driver is touched ([`process::gpu_used_by_parent`]): the driver does not survive a fork.
pub(crate) fn open(spec: DeviceSpec) -> Result<Option<Arc<dyn Backend>>, GpuError> {
    if spec == DeviceSpec::Cpu {
        return Ok(None);
    }
    if let Some(parent) = process::gpu_used_by_parent() {
        return Err(GpuError::NoDevice {
            kind: match spec {
                DeviceSpec::Gpu(kind, _) => kind,
                _ => DeviceKind::Cuda,
            },
            ordinal: match spec {
                DeviceSpec::Gpu(_, o) => o,
                _ => 0,
            },
            reason: process::forked_gpu_error(parent),
        });
    }
    let Some(key) = quantforge::device::resolve(spec) else {
        return Ok(None);
    };
    process::note_gpu_use();
    // Held while opening, so that two threads asking for the same device open it once.
    let mut map = BACKENDS.get_or_init(Default::default).lock();
    if let Some(b) = map.get(&key) {
        return Ok(Some(b.clone()));
    }
    let options = DeviceOptions {
        prebuilt_cubins: PREBUILT.lock().clone(),
    };
    let gpu = DeviceSpec::Gpu(key.0, key.1);
    let backend: Arc<dyn Backend> = match quantforge::device::open_with(gpu, &options)? {
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
