//! Cubin files: where a format's lies ahead of time, which one runs on a device, the checks
//! before the driver sees one, and the NVRTC options that build one.

use std::path::{Path, PathBuf};

use quant_gpu::code_object::{Elf64, EM_CUDA};

/// Checks that a cubin built for `sm_<cubin_sm>` runs on a device of compute capability
/// `major.minor`. A cubin runs on devices of its own major version and the same or a higher
/// minor version (CUDA's binary compatibility rule); anything else is refused with a message
/// that names both, rather than leaving the driver to fail with "no kernel image".
pub fn check_cubin_arch(cubin_sm: u32, (major, minor): (u32, u32)) -> Result<(), String> {
    let (c_major, c_minor) = (cubin_sm / 10, cubin_sm % 10);
    if c_major == major && c_minor <= minor {
        return Ok(());
    }
    Err(format!(
        "built for sm_{cubin_sm}, but the device is sm_{major}{minor} (compute capability \
         {major}.{minor}); a cubin runs only on its own major version, at the same or a higher \
         minor version: rebuild it for sm_{major}{minor}"
    ))
}

/// The cubin under `dir` (files `sm_XX.cubin`) that runs on a device of compute capability
/// `major.minor` ([`check_cubin_arch`]) with the highest `XX`, if any.
pub fn best_prebuilt_cubin(dir: &Path, capability: (u32, u32)) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let sm: u32 = name
                .strip_prefix("sm_")?
                .strip_suffix(".cubin")?
                .parse()
                .ok()?;
            check_cubin_arch(sm, capability).ok()?;
            Some((sm, path))
        })
        .max_by_key(|(sm, _)| *sm)
        .map(|(_, path)| path)
}

/// Path of a format's cubin for architecture `arch` under `dir`:
/// `<dir>/<format>/<sm_XX>.cubin`.
pub(crate) fn path(dir: &Path, format: &str, arch: &str) -> PathBuf {
    dir.join(format).join(format!("{arch}.cubin"))
}

/// NVRTC options used for every kernel: the device's real architecture (so that NVRTC emits a
/// cubin), no contraction into FMA, IEEE division and square root, no flush to zero.
pub(crate) fn nvrtc_options(arch: &str) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture={arch}")];
    o.extend(quant_core::NVIDIA_EXACT_FLAGS.iter().map(|f| f.to_string()));
    o.push("--std=c++17".into());
    o
}

/// Checks that `image` is a complete little-endian ELF64 file for NVIDIA GPUs (every header,
/// section and segment it declares inside it) and returns the SM version it was built for.
pub(crate) fn check(image: &[u8]) -> Result<u32, String> {
    let elf = Elf64::parse(image).map_err(|e| e.to_string())?;
    match elf.cuda_sm() {
        Some(sm) => Ok(sm),
        None => Err(format!(
            "ELF machine {}, not NVIDIA CUDA ({EM_CUDA})",
            elf.machine()
        )),
    }
}
