//! Checks on produced code objects: ELF machine, target architecture and entry-point symbols.

use std::path::Path;

use object::read::elf::{ElfFile64, FileHeader};
use object::{Endianness, Object, ObjectSymbol, SymbolKind};

use crate::error::XtaskError;

/// `e_machine` of AMD GPU code objects (HSACO).
pub const EM_AMDGPU: u16 = 224;
/// `e_machine` of NVIDIA cubins.
pub const EM_CUDA: u16 = 190;

/// `EF_AMDGPU_MACH` values (the low byte of `e_flags`) of the architectures we build for.
pub const AMDGPU_MACH: [(&str, u32); 5] = [
    ("gfx906", 0x2f),
    ("gfx908", 0x30),
    ("gfx90a", 0x3f),
    ("gfx940", 0x40),
    ("gfx1030", 0x36),
];

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
    let elf = ElfFile64::<Endianness>::parse(data)
        .map_err(|e| bad(format!("not a 64-bit ELF file: {e}")))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    let machine = header.e_machine(endian);
    let flags = header.e_flags(endian);
    match expect {
        Expect::Hsaco(arch) => {
            if machine != EM_AMDGPU {
                return Err(bad(format!(
                    "e_machine is {machine}, not {EM_AMDGPU} (AMDGPU)"
                )));
            }
            let want = AMDGPU_MACH
                .iter()
                .find(|(a, _)| *a == arch)
                .map(|&(_, m)| m)
                .ok_or_else(|| bad(format!("unknown AMDGPU architecture {arch}")))?;
            let mach = flags & 0xff;
            if mach != want {
                let got = AMDGPU_MACH
                    .iter()
                    .find(|(_, m)| *m == mach)
                    .map_or("unknown", |(a, _)| a);
                return Err(bad(format!(
                    "built for EF_AMDGPU_MACH {mach:#x} ({got}), expected {want:#x} ({arch})"
                )));
            }
        }
        Expect::Cubin(sm) => {
            if machine != EM_CUDA {
                return Err(bad(format!("e_machine is {machine}, not {EM_CUDA} (CUDA)")));
            }
            let got = cubin_sm(header.e_ident().abi_version, flags);
            if got != sm {
                return Err(bad(format!("built for sm_{got}, expected sm_{sm}")));
            }
        }
    }

    let defined: Vec<String> = elf
        .symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    let kernels = || {
        elf.symbols()
            .filter(|s| s.is_definition() && s.kind() == SymbolKind::Text)
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for entry in entries {
        let mut wanted = vec![entry.to_string()];
        if matches!(expect, Expect::Hsaco(_)) {
            wanted.push(format!("{entry}.kd"));
        }
        for name in wanted {
            if !defined.contains(&name) {
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

/// SM version a cubin was built for. ABI version 8 (CUDA 12.8 on) keeps it in bits 8..16 of
/// `e_flags`; older cubins keep it in the low byte.
pub fn cubin_sm(abi_version: u8, flags: u32) -> u32 {
    if abi_version >= 8 {
        (flags >> 8) & 0xff
    } else {
        flags & 0xff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubin_sm_both_abis() {
        // Flags nvcc 13.0 wrote for sm_80 and sm_90, and an old-style sm_80 cubin's.
        assert_eq!(cubin_sm(8, 0x0600_5004), 80);
        assert_eq!(cubin_sm(8, 0x0600_5a04), 90);
        assert_eq!(cubin_sm(7, 0x0050_0550), 80);
    }

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
