//! Checks on produced code objects: ELF machine, target architecture and entry-point symbols.

use std::path::Path;

use quant_gpu::code_object::{amdgpu_arch, amdgpu_mach, Elf64};
pub use quant_gpu::code_object::{AMDGPU_MACH, EM_AMDGPU, EM_CUDA};

use crate::error::XtaskError;

/// What a code object is meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect<'a> {
    /// An AMDGPU ELF for this `gfx` architecture.
    Hsaco(&'a str),
    /// A cubin for this SM version (80 for `sm_80`).
    Cubin(u32),
}

/// Verifies that `data` (read from `path`) is an ELF of the expected machine and architecture
/// that defines every name in `entries` (for HSACO, also each entry's `.kd` kernel descriptor).
/// Returns the number of entry points checked.
pub fn verify(
    path: &Path,
    data: &[u8],
    expect: Expect<'_>,
    entries: &[&str],
    source_file: &str,
) -> Result<usize, XtaskError> {
    let bad = |reason: String| XtaskError::BadObject {
        path: path.to_path_buf(),
        reason,
    };
    let elf = Elf64::parse(data).map_err(|e| bad(format!("not a usable 64-bit ELF file: {e}")))?;
    let machine = elf.machine();
    let flags = elf.flags();
    match expect {
        Expect::Hsaco(arch) => {
            if machine != EM_AMDGPU {
                return Err(bad(format!(
                    "e_machine is {machine}, not {EM_AMDGPU} (AMDGPU)"
                )));
            }
            let want = amdgpu_mach(arch)
                .ok_or_else(|| bad(format!("unknown AMDGPU architecture {arch}")))?;
            let mach = flags & 0xff;
            if mach != want {
                let got = amdgpu_arch(flags).unwrap_or("unknown");
                return Err(bad(format!(
                    "built for EF_AMDGPU_MACH {mach:#x} ({got}), expected {want:#x} ({arch})"
                )));
            }
        }
        Expect::Cubin(sm) => {
            if machine != EM_CUDA {
                return Err(bad(format!("e_machine is {machine}, not {EM_CUDA} (CUDA)")));
            }
            let got = elf.cuda_sm().unwrap_or(0);
            if got != sm {
                return Err(bad(format!("built for sm_{got}, expected sm_{sm}")));
            }
        }
    }

    let kernels = || elf.function_names().join(", ");
    for entry in entries {
        // The entry point itself is a function; an HSACO also defines its kernel descriptor
        // (an object symbol, `<entry>.kd`).
        let mut wanted = vec![(entry.to_string(), true)];
        if matches!(expect, Expect::Hsaco(_)) {
            wanted.push((format!("{entry}.kd"), false));
        }
        for (name, function) in wanted {
            let found = if function {
                elf.has_function(&name)
            } else {
                elf.defines(&name)
            };
            if !found {
                return Err(XtaskError::MissingEntry {
                    path: path.to_path_buf(),
                    entry: name,
                    file: source_file.to_string(),
                    has: kernels(),
                });
            }
        }
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_rejected() {
        let err = verify(
            Path::new("x.hsaco"),
            b"definitely not an ELF file",
            Expect::Hsaco("gfx90a"),
            &["k"],
            "k.hip",
        )
        .unwrap_err();
        assert!(matches!(err, XtaskError::BadObject { .. }), "{err}");
        assert!(err.to_string().contains("x.hsaco"));
    }
}
