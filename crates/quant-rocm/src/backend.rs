//! [`HipBackend`]: quant-gpu's [`GpuBackend`] over [`HipDriver`], with HIP's constructors.

use hip_runtime_sys::{hipDevice_t, hipStream_t};
use quant_gpu::driver::{DelegateBackend, DriverError, GpuBackend};
use quant_gpu::{Backend, Buffer, DeviceKind, GpuError, KernelSpec, OutputDType};

use crate::driver::HipDriver;
use crate::ffi::{self, HipError, Stream};

/// A runtime error as every backend reports one ([`GpuError::Driver`] naming the call).
fn runtime(e: HipError) -> GpuError {
    DriverError::from(e).into()
}

fn no_device(ordinal: usize, reason: String) -> GpuError {
    GpuError::NoDevice {
        kind: DeviceKind::Hip,
        ordinal,
        reason,
    }
}

/// Number of AMD GPUs the HIP runtime sees. [`GpuError::NoDevice`] when there is none (a
/// machine without an AMD GPU, or without `/dev/kfd` access): never a panic.
pub fn device_count() -> Result<usize, GpuError> {
    match ffi::device_count() {
        Ok(0) => Err(no_device(0, "the HIP runtime reports no AMD GPU".into())),
        Ok(n) => Ok(n),
        Err(e) => Err(no_device(0, e.to_string())),
    }
}

/// Version of the HIP runtime library linked (`hipRuntimeGetVersion`), e.g. 50221153 for
/// Debian's ROCm 5.2. Works without a device.
pub fn runtime_version() -> Result<i32, GpuError> {
    ffi::runtime_version().map_err(runtime)
}

/// An AMD GPU through the HIP runtime (`libamdhip64`), running HSACO code objects built ahead
/// of time: a [`Backend`] (through [`DelegateBackend`]).
///
/// Work runs on two streams: the compute stream (kernels, fills, device copies, `upload`,
/// `download`) and the copy stream (the pipeline's asynchronous uploads).
/// [`Backend::synchronize`] drains both. Both are non-blocking streams of the backend's own
/// ([`HipBackend::new`]), or the compute stream is an engine's ([`HipBackend::on_stream`]),
/// which the backend uses and never destroys.
#[derive(Debug)]
pub struct HipBackend {
    gpu: GpuBackend<HipDriver>,
}

impl DelegateBackend for HipBackend {
    fn delegate(&self) -> &dyn Backend {
        &self.gpu
    }
}

impl HipBackend {
    /// Opens AMD GPU `ordinal`, with two non-blocking streams of its own.
    /// [`GpuError::NoDevice`] if there is no such device.
    pub fn new(ordinal: usize) -> Result<Self, GpuError> {
        Self::open(ordinal, None)
    }

    /// Opens AMD GPU `device` on an engine's `stream` of that device: every kernel and every
    /// synchronous copy (`upload`, `upload_at`, `download`, `fill`, `copy`) is queued on
    /// `stream`, so the engine's later work on it is ordered after them without a
    /// synchronisation. The pipelined load's copy queue ([`Queue::Copy`](quant_gpu::Queue::Copy)) keeps a non-blocking
    /// stream of the backend's own, whose copies the kernels on `stream` wait for through
    /// events; [`Backend::make_stream_wait`] orders any other stream. [`Backend::synchronize`]
    /// synchronizes `stream` too (all of the engine's work queued on it so far).
    ///
    /// `device` is the ordinal (`hipGetDevice`, `torch.cuda.current_device()` on ROCm; HIP's
    /// `hipDevice_t` from `hipDeviceGet` is the same number). A null `stream` is the device's
    /// null stream (PyTorch's default stream on ROCm). The sentinels `1` (`hipStreamLegacy`)
    /// and `2` (`hipStreamPerThread`, a different stream in each host thread, while loads issue
    /// work from several) are refused, as are a negative ordinal and a device the runtime does
    /// not see ([`GpuError::NoDevice`]); all of that is checked before the stream is used. The
    /// backend never destroys `stream`; dropping it waits only for its own copies out of its
    /// staging buffers, not for the engine's work. Tensors loaded through it live in the
    /// device's memory as with [`HipBackend::new`].
    ///
    /// # Safety
    /// `stream` must be null or a live stream of device `device`, and must outlive the backend
    /// (and the work it queued). The runtime cannot check this (ROCm 5.2 has no
    /// `hipStreamGetDevice`).
    #[allow(unsafe_code)] // the caller's contract; the runtime calls are in `ffi`
    pub unsafe fn on_stream(device: hipDevice_t, stream: hipStream_t) -> Result<Self, GpuError> {
        let ordinal = usize::try_from(device).map_err(|_| GpuError::Driver {
            op: "HipBackend::on_stream".into(),
            reason: format!("device {device} is not a HIP device ordinal"),
        })?;
        // SAFETY: forwarded from this function's contract.
        let engine = unsafe { Stream::borrowed(ordinal, stream) }.map_err(runtime)?;
        Self::open(ordinal, Some(engine))
    }

    /// The raw handle of the compute stream, on which kernels are queued (the engine's, with
    /// [`HipBackend::on_stream`]). Valid while the backend lives (and, for an engine's stream,
    /// while the engine keeps it).
    pub fn compute_stream(&self) -> hipStream_t {
        self.gpu.driver().stream.raw()
    }

    /// The engine's stream, when opened with [`HipBackend::on_stream`] (null: the device's
    /// null stream).
    pub fn engine_stream(&self) -> Option<hipStream_t> {
        let stream = &self.gpu.driver().stream;
        (!stream.is_owned()).then(|| stream.raw())
    }

    /// How many code objects this backend has loaded so far (one per format that no other
    /// backend of its device had loaded).
    pub fn modules_built(&self) -> usize {
        self.gpu.modules_built()
    }

    /// [`Backend::dequantize`] with at most `max_groups` groups launched (the kernels stride
    /// over the rest). `None` launches one group per `blocks_per_group` blocks.
    pub fn dequantize_with_grid(
        &self,
        kernel: &'static KernelSpec,
        src: &Buffer,
        n_blocks: u64,
        dst: &mut Buffer,
        dtype: OutputDType,
        max_groups: Option<u32>,
    ) -> Result<(), GpuError> {
        self.gpu
            .dequantize_with_grid(kernel, src, n_blocks, dst, dtype, max_groups)
    }

    /// Opens device `ordinal` with `engine` as its compute stream, or a stream of its own.
    fn open(ordinal: usize, engine: Option<Stream>) -> Result<Self, GpuError> {
        let n = device_count().map_err(|e| match e {
            GpuError::NoDevice { reason, .. } => no_device(ordinal, reason),
            other => other,
        })?;
        if ordinal >= n {
            return Err(no_device(
                ordinal,
                format!("the HIP runtime sees {n} device(s)"),
            ));
        }
        let driver = HipDriver::open(ordinal, engine).map_err(runtime)?;
        Ok(HipBackend {
            gpu: GpuBackend::new(driver),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without an AMD GPU (no `/dev/kfd`) every entry point says NoDevice, with the
    /// ordinal asked for, and never panics. With a GPU the same calls must succeed.
    #[test]
    fn no_device_is_an_error_not_a_panic() {
        let has_kfd = std::path::Path::new("/dev/kfd").exists();
        match device_count() {
            Err(GpuError::NoDevice {
                kind,
                ordinal,
                reason,
            }) => {
                assert_eq!(kind, DeviceKind::Hip);
                assert_eq!(ordinal, 0);
                assert!(!reason.is_empty());
            }
            Ok(n) => assert!(has_kfd && n > 0, "device_count() = {n} without /dev/kfd"),
            Err(other) => panic!("expected NoDevice, got {other}"),
        }
        if has_kfd {
            return;
        }
        for ordinal in [0, 3] {
            match HipBackend::new(ordinal) {
                Err(GpuError::NoDevice {
                    kind,
                    ordinal: o,
                    reason,
                }) => {
                    assert_eq!(kind, DeviceKind::Hip);
                    assert_eq!(o, ordinal);
                    assert!(reason.contains("hipErrorNoDevice"), "{reason}");
                }
                Err(other) => panic!("expected NoDevice, got {other}"),
                Ok(b) => panic!("opened {:?} without a GPU", b.info()),
            }
        }
        // Device calls underneath report errors too.
        assert!(ffi::device_props(0).is_err());
        assert!(ffi::mem_info(0).is_err());
        assert!(ffi::DeviceMem::alloc(0, 16).is_err());
    }

    #[test]
    fn the_runtime_is_linked_and_answers() {
        // Debian's ROCm 5.2 reports 502xxxxx; any ROCm 5 or later will do.
        let v = runtime_version().unwrap();
        assert!(v >= 50_000_000, "hipRuntimeGetVersion = {v}");
    }
}
