//! # quant-rocm
//!
//! quantforge's AMD backend: [`HipBackend`] implements [`quant_gpu::Backend`] on the HIP runtime
//! (`libamdhip64`, through `hip-runtime-sys`).
//!
//! * Kernels are never compiled at run time. `cargo xtask build-kernels` compiles each
//!   registered format's `kernel.hip` to HSACO for gfx906, gfx908, gfx90a, gfx940 and gfx1030;
//!   this crate's build script embeds what it finds in `target/kernels/<format>/<arch>.hsaco`.
//!   At run time the file named by the format's `<FORMAT>_DEQUANT_HSACO` variable
//!   ([`code_object::hsaco_env`]) wins over the embedded copy ([`code_object`]). A missing or
//!   broken object is a [`GpuError::CodeObject`](quant_gpu::GpuError::CodeObject) naming the
//!   file: there is no silent fallback.
//! * The backend is quant-gpu's [`GpuBackend`](quant_gpu::driver::GpuBackend), the same code as
//!   CUDA's, over this crate's driver (the HIP calls, streams, staging and code objects): buffer
//!   checks, launch planning, error shapes and event timing are written once there, and
//!   unit-tested there against a fake driver.
//! * Modules and their functions are loaded once per device and format and shared by every
//!   backend of that device while one lives ([`quant_gpu::ContextModules`]); a launch of zero
//!   blocks loads nothing.
//! * Every launch, whole-buffer or at byte offsets (`dequantize_at`), is checked and sized by
//!   [`quant_gpu::plan_launch`] from the spec's block geometry and the device's limits; the FFI
//!   wrapper checks the plan's ranges against the buffers once more.
//! * Uploads go through two pinned staging buffers used in turn; work runs in order on the
//!   backend's non-blocking compute stream; [`Backend::time_events`](quant_gpu::Backend) uses
//!   HIP events, read after the last timed run.
//! * The pipeline primitives of [`quant_gpu::Backend`] are implemented, so the pipelined loader
//!   overlaps reads, copies and kernels on AMD GPUs as well (`async_primitives()` is true):
//!   page-locked [`HostBuffer`](quant_gpu::HostBuffer)s (`hipHostMalloc`, zeroed); a second
//!   non-blocking stream for [`Queue::Copy`](quant_gpu::Queue) (`synchronize` drains both);
//!   `upload_async` (`hipMemcpyHtoDAsync` at byte offsets, both ranges checked first, an event
//!   after it as the host buffer's pending fence; ordinary memory is copied synchronously,
//!   another backend's or device's page-locked memory refused); `record` and `wait_fence` with
//!   `hipEventDisableTiming` events from a per-backend pool (`hipStreamWaitEvent`; another
//!   backend's fence is waited for on the host); `upload_at` and `dequantize_at` at offsets.
//!   Like the rest of this crate this has only been compiled and unit-tested, never run on an
//!   AMD GPU; `tests/gpu.rs` exercises it when one is present
//!   (`QUANTFORGE_GPU_TESTS=1 QUANTFORGE_GPU_KIND=hip`).
//! * The warp (wavefront) size comes from the device: 64 on CDNA (gfx9), 32 on RDNA.
//! * Engines get tensors without a copy, as on CUDA: [`HipBackend::on_stream`] queues the
//!   backend's kernels on an engine's stream; a buffer's
//!   [`device_ptr`](quant_gpu::Buffer::device_ptr) is a HIP device address and
//!   [`into_raw`](quant_gpu::Buffer::into_raw) hands the allocation over (free it with
//!   `hipFree`); [`Backend::wrap_device_memory`](quant_gpu::Backend::wrap_device_memory) takes
//!   the engine's own memory after asking the runtime that it is one allocation of this device
//!   (`hipPointerGetAttributes`, `hipMemGetAddressRange`), and
//!   [`Backend::make_stream_wait`](quant_gpu::Backend::make_stream_wait) orders an engine's
//!   stream (`0`, the null stream, included) after the backend's work with events. Compiled and
//!   unit-tested only, like the rest.
//!
//! All `unsafe` code is in one private module of thin checked wrappers (the crate denies
//! `unsafe_code` elsewhere); everything public is safe except the hand-over calls whose
//! contract the caller must keep ([`HipBackend::on_stream`] and the two `unsafe` methods of
//! [`quant_gpu::Backend`]). On a machine without an AMD GPU, [`device_count`],
//! [`HipBackend::new`] and [`HipBackend::on_stream`] return
//! [`GpuError::NoDevice`](quant_gpu::GpuError::NoDevice).
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod backend;
pub mod code_object;
mod driver;
#[allow(unsafe_code)]
mod ffi;

pub use backend::{device_count, runtime_version, HipBackend};
/// The HIP bindings this backend is built on, re-exported so that an engine names the same
/// `hipStream_t` and `hipDevice_t` types [`HipBackend::on_stream`] takes (and can `hipFree` what
/// [`quant_gpu::Buffer::into_raw`] hands over).
pub use hip_runtime_sys;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::code_object::{self, AMDGPU_MACH, EM_AMDGPU};

    // Link the format crates so that the registry holds their kernel specs.
    use quant_float as _;
    use quant_q4_0 as _;
    use quant_q4k as _;
    use quant_q6k as _;

    fn specs() -> Vec<&'static quant_core::KernelSpec> {
        let specs: Vec<_> = quant_core::registry()
            .iter()
            .filter_map(|f| f.kernel())
            .collect();
        assert!(!specs.is_empty(), "no registered format has kernels");
        specs
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// After `cargo xtask build-kernels`, every registered format has an embedded HSACO for
    /// every architecture, each an AMDGPU ELF for that architecture that defines the spec's
    /// kernel descriptors, identical to the file on disk.
    #[test]
    fn embedded_objects_cover_every_format_and_arch() {
        let dir = code_object::kernels_dir();
        for spec in specs() {
            for (arch, mach) in AMDGPU_MACH {
                let e = code_object::embedded()
                    .iter()
                    .find(|e| e.format == spec.format && e.arch == arch)
                    .unwrap_or_else(|| {
                        panic!(
                            "no embedded {arch} object for {} under {}: run `cargo xtask build-kernels` before building quant-rocm",
                            spec.format,
                            dir.display()
                        )
                    });
                let b = e.bytes;
                assert_eq!(&b[..4], b"\x7fELF", "{} {arch}", spec.format);
                assert_eq!(u16::from_le_bytes([b[18], b[19]]), EM_AMDGPU);
                assert_eq!(
                    u32::from_le_bytes([b[48], b[49], b[50], b[51]]) & 0xff,
                    mach
                );
                assert_eq!(code_object::elf_arch(b).unwrap(), arch);
                let elf = quant_gpu::code_object::Elf64::parse(b).unwrap();
                for dtype in quant_core::OutputDType::ALL {
                    let kd = format!("{}.kd\0", spec.entry(dtype));
                    assert!(
                        contains(b, kd.as_bytes()),
                        "{} {arch}: no {kd}",
                        spec.format
                    );
                    assert!(
                        elf.has_function(spec.entry(dtype)),
                        "{} {arch}",
                        spec.format
                    );
                    assert!(elf.defines(kd.trim_end_matches('\0')));
                }
                let on_disk = dir.join(spec.format).join(format!("{arch}.hsaco"));
                let disk = std::fs::read(&on_disk)
                    .unwrap_or_else(|e| panic!("{}: {e}", on_disk.display()));
                assert!(
                    disk == b,
                    "{} is newer than the embedded copy: rebuild",
                    on_disk.display()
                );
            }
        }
    }

    /// The objects on disk load through the environment variable path for their own
    /// architecture and are refused for another one, naming the file.
    #[test]
    fn built_objects_resolve_through_the_env_var() {
        let dir = code_object::kernels_dir();
        for spec in specs() {
            let file = dir.join(spec.format).join("gfx90a.hsaco");
            assert!(
                file.is_file(),
                "{} missing: run `cargo xtask build-kernels`",
                file.display()
            );
            let f = file.clone();
            let var = code_object::hsaco_env(spec);
            let env = move |k: &str| (k == var).then(|| f.clone().into_os_string());
            let co = code_object::resolve_with(spec, "gfx90a", &env, &[], Path::new("/x")).unwrap();
            assert!(co.from_env);
            assert_eq!(co.path, file);
            let err =
                code_object::resolve_with(spec, "gfx1030", &env, &[], Path::new("/x")).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("gfx90a.hsaco") && msg.contains("gfx1030"),
                "{msg}"
            );
            // Without the variable, the embedded copy is used.
            let co =
                code_object::resolve_with(spec, "gfx90a", |_| None, code_object::embedded(), dir)
                    .unwrap();
            assert!(!co.from_env);
        }
    }
}
