//! The hand-over API's checks that need no AMD GPU: `HipBackend::on_stream` refuses a negative
//! ordinal and the stream sentinels before using anything, and without a device it says
//! `NoDevice`, never panics. (What needs a GPU is in `tests/gpu.rs`.)

use quant_gpu::{DeviceKind, GpuError};
use quant_rocm::hip_runtime_sys::hipStream_t;
use quant_rocm::HipBackend;

fn has_kfd() -> bool {
    std::path::Path::new("/dev/kfd").exists()
}

#[test]
fn on_stream_refuses_what_is_no_device_or_no_stream_first() {
    // SAFETY: refused before the (null) stream is used.
    match unsafe { HipBackend::on_stream(-1, std::ptr::null_mut()) } {
        Err(GpuError::Driver { op, reason }) => {
            assert!(
                op.contains("on_stream") && reason.contains("-1"),
                "{op}: {reason}"
            )
        }
        other => panic!("expected a refusal of device -1, got {other:?}"),
    }
    for (raw, name) in [(1usize, "hipStreamLegacy"), (2, "hipStreamPerThread")] {
        // SAFETY: sentinels are refused before the runtime sees them.
        match unsafe { HipBackend::on_stream(0, raw as hipStream_t) } {
            Err(GpuError::Driver { op, reason }) => {
                assert!(
                    op.contains("on_stream") && reason.contains(name),
                    "{reason}"
                )
            }
            other => panic!("expected a refusal of stream {raw}, got {other:?}"),
        }
    }
}

/// Without an AMD GPU: `NoDevice` naming the ordinal asked for, whatever the stream (a bogus
/// handle is never used: the device is looked for first).
#[test]
fn on_stream_without_a_device_is_no_device() {
    if has_kfd() {
        return;
    }
    for (ordinal, stream) in [(0, 0usize), (0, 0x7f00_dead_0000), (5, 0)] {
        // SAFETY: no device: refused before the stream is used.
        match unsafe { HipBackend::on_stream(ordinal, stream as hipStream_t) } {
            Err(GpuError::NoDevice {
                kind,
                ordinal: o,
                reason,
            }) => {
                assert_eq!(kind, DeviceKind::Hip);
                assert_eq!(o, ordinal as usize);
                assert!(reason.contains("hipErrorNoDevice"), "{reason}");
            }
            Err(other) => panic!("expected NoDevice, got {other}"),
            Ok(b) => panic!("opened {b:?} without a GPU"),
        }
    }
}
