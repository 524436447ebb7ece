//! Finding and checking HSACO code objects, without touching a device.
//!
//! For a format's [`KernelSpec`] and a device architecture the bytes come from, in order:
//!
//! 1. the file named by the format's environment variable, [`hsaco_env`] (`Q4_K_DEQUANT_HSACO`
//!    for `q4_k`), if set;
//! 2. the object embedded at build time from `target/kernels/<format>/<arch>.hsaco`
//!    (`cargo xtask build-kernels`).
//!
//! Either way the bytes are checked before the runtime sees them: an AMDGPU ELF
//! (`e_machine` 224), or a clang offload bundle holding one, built for the device's
//! architecture, whose headers, sections, segments and symbol tables all lie inside it (read
//! with [`quant_gpu::code_object::Elf64`]). Anything else is a [`GpuError::CodeObject`] naming
//! the file.

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use quant_gpu::{GpuError, KernelSpec};

/// A code object embedded at build time.
#[derive(Debug)]
pub struct Embedded {
    /// Format folder (`"q4_k"`).
    pub format: &'static str,
    /// Architecture (`"gfx90a"`).
    pub arch: &'static str,
    /// The HSACO bytes.
    pub bytes: &'static [u8],
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded_hsaco.rs"));
}

/// Every code object embedded into this build.
pub fn embedded() -> &'static [Embedded] {
    generated::EMBEDDED
}

/// The folder embedded code objects were read from at build time.
pub fn kernels_dir() -> &'static Path {
    Path::new(generated::KERNELS_DIR)
}

use quant_gpu::code_object::{Elf64, ElfError};
pub use quant_gpu::code_object::{AMDGPU_MACH, EM_AMDGPU};

/// The base architecture of a `gcnArchName`: `gfx90a:sramecc+:xnack-` → `gfx90a`.
pub fn base_arch(gcn_arch_name: &str) -> &str {
    gcn_arch_name.split(':').next().unwrap_or("").trim()
}

/// Code object bytes and where they came from.
#[derive(Debug, Clone)]
pub struct CodeObject {
    /// The file (given by the environment variable, or the one embedded at build time).
    pub path: PathBuf,
    /// Whether it came from the environment variable.
    pub from_env: bool,
    /// The bytes, as handed to `hipModuleLoadData`.
    pub bytes: Cow<'static, [u8]>,
    /// The architecture the ELF inside was built for.
    pub arch: String,
}

/// The environment variable that may name `spec`'s HSACO file in place of the embedded one: the
/// format's name in capitals, then `_DEQUANT_HSACO` (`Q4_K_DEQUANT_HSACO` for `q4_k`). Derived
/// here, on the AMD side, so that the vendor-neutral [`KernelSpec`] carries nothing of HIP's.
pub fn hsaco_env(spec: &KernelSpec) -> String {
    format!("{}_DEQUANT_HSACO", spec.format.to_ascii_uppercase())
}

/// Resolves the code object of `spec` for a device of architecture `arch` (a base name such
/// as `gfx90a`), reading the real environment and the objects embedded in this build.
pub fn resolve(spec: &KernelSpec, arch: &str) -> Result<CodeObject, GpuError> {
    resolve_with(
        spec,
        arch,
        |k| std::env::var_os(k),
        embedded(),
        kernels_dir(),
    )
}

/// [`resolve`] with the environment, the embedded objects and their folder given: the rule,
/// testable without a device.
pub fn resolve_with(
    spec: &KernelSpec,
    arch: &str,
    env: impl Fn(&str) -> Option<OsString>,
    embedded: &[Embedded],
    kernels_dir: &Path,
) -> Result<CodeObject, GpuError> {
    let var = hsaco_env(spec);
    if let Some(p) = env(&var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        let bytes = std::fs::read(&path).map_err(|e| GpuError::CodeObject {
            path: path.clone(),
            reason: format!("named by {var}, but cannot be read: {e}"),
        })?;
        let found = inspect(&bytes, arch).map_err(|reason| GpuError::CodeObject {
            path: path.clone(),
            reason: format!("named by {var}: {reason}"),
        })?;
        return Ok(CodeObject {
            path,
            from_env: true,
            bytes: Cow::Owned(bytes),
            arch: found,
        });
    }
    let path = kernels_dir.join(spec.format).join(format!("{arch}.hsaco"));
    let Some(e) = embedded
        .iter()
        .find(|e| e.format == spec.format && e.arch == arch)
    else {
        let have: Vec<&str> = embedded
            .iter()
            .filter(|e| e.format == spec.format)
            .map(|e| e.arch)
            .collect();
        return Err(GpuError::CodeObject {
            path,
            reason: format!(
                "no {arch} code object for {} was embedded at build time (embedded: {}); \
                 run `cargo xtask build-kernels` and rebuild, or set {} to an HSACO file",
                spec.format,
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                },
                var
            ),
        });
    };
    let found = inspect(e.bytes, arch).map_err(|reason| GpuError::CodeObject {
        path: path.clone(),
        reason: format!("embedded copy: {reason}"),
    })?;
    Ok(CodeObject {
        path,
        from_env: false,
        bytes: Cow::Borrowed(e.bytes),
        arch: found,
    })
}

const BUNDLE_MAGIC: &[u8] = b"__CLANG_OFFLOAD_BUNDLE__";

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The AMDGPU architecture of an HSACO ELF, from `e_machine` and `EF_AMDGPU_MACH`, after
/// checking that every header, section, segment and symbol table it declares lies inside it.
pub fn elf_arch(b: &[u8]) -> Result<&'static str, String> {
    let elf = Elf64::parse(b).map_err(|e| match e {
        ElfError::NotElf64Le { .. } => "not a 64-bit little-endian ELF".to_string(),
        other => other.to_string(),
    })?;
    let machine = elf.machine();
    if machine != EM_AMDGPU {
        return Err(format!(
            "ELF e_machine is {machine}, not {EM_AMDGPU} (AMDGPU): not an HSACO code object"
        ));
    }
    let mach = elf.flags() & 0xff;
    elf.amdgpu_arch().ok_or_else(|| {
        format!("AMDGPU ELF for EF_AMDGPU_MACH {mach:#x}, an architecture quantforge does not build for")
    })
}

/// Checks that `bytes` hold an AMDGPU code object for `arch`: an HSACO ELF, or a clang
/// offload bundle (what `hipcc --genco` writes by default) with an entry for `arch`.
/// Returns the architecture found; the error says what is wrong.
pub fn inspect(bytes: &[u8], arch: &str) -> Result<String, String> {
    let elf: &[u8] = if bytes.starts_with(BUNDLE_MAGIC) {
        bundle_entry(bytes, arch)?
    } else {
        bytes
    };
    let found = elf_arch(elf)?;
    if found != arch {
        return Err(format!("built for {found}, but the device is {arch}"));
    }
    Ok(found.to_string())
}

/// The entry of a clang offload bundle whose target triple names `arch`
/// (`hipv4-amdgcn-amd-amdhsa--gfx90a[:features]`).
fn bundle_entry<'a>(b: &'a [u8], arch: &str) -> Result<&'a [u8], String> {
    let truncated = || "truncated clang offload bundle".to_string();
    let n = u64_at(b, BUNDLE_MAGIC.len()).ok_or_else(truncated)?;
    let mut at = BUNDLE_MAGIC.len() + 8;
    let mut targets = Vec::new();
    // Each entry takes at least 24 bytes: a count larger than that is a broken file.
    if n > (b.len() / 24) as u64 {
        return Err(truncated());
    }
    for _ in 0..n {
        let off = u64_at(b, at).ok_or_else(truncated)?;
        let size = u64_at(b, at + 8).ok_or_else(truncated)?;
        let tlen = u64_at(b, at + 16).ok_or_else(truncated)?;
        let tstart = at + 24;
        let tend = usize::try_from(tlen)
            .ok()
            .and_then(|l| tstart.checked_add(l))
            .ok_or_else(truncated)?;
        let triple = b.get(tstart..tend).ok_or_else(truncated)?;
        let triple = String::from_utf8_lossy(triple).into_owned();
        at = tend;
        let entry_arch = triple
            .split_once("amdgcn-amd-amdhsa")
            .map(|(_, rest)| base_arch(rest.trim_start_matches('-')).to_string());
        if entry_arch.as_deref() == Some(arch) {
            let start = usize::try_from(off).map_err(|_| truncated())?;
            let end = usize::try_from(size)
                .ok()
                .and_then(|s| start.checked_add(s))
                .ok_or_else(truncated)?;
            return b.get(start..end).ok_or_else(truncated);
        }
        targets.push(triple);
    }
    Err(format!(
        "clang offload bundle has no entry for {arch} (has: {})",
        targets.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPEC: KernelSpec = KernelSpec {
        format: "q4_k",
        file_name: "quant-q4k/kernel.hip",
        source: "",
        entry_f32: "a",
        entry_f16: "b",
        entry_bf16: "c",
        threads_per_group: 256,
        blocks_per_group: 8,
        geometry: quant_core::BlockGeometry {
            block_elems: 256,
            block_bytes: 144,
        },
    };

    #[test]
    fn the_variable_is_the_format_name_in_capitals() {
        assert_eq!(hsaco_env(&SPEC), "Q4_K_DEQUANT_HSACO");
        let spec = KernelSpec {
            format: "iq2_xxs",
            ..SPEC
        };
        assert_eq!(hsaco_env(&spec), "IQ2_XXS_DEQUANT_HSACO");
    }

    /// A minimal AMDGPU ELF header for `mach`.
    fn fake_hsaco(mach: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&EM_AMDGPU.to_le_bytes());
        b[48..52].copy_from_slice(&(0x500 | mach).to_le_bytes());
        b
    }

    fn bundle(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut head = BUNDLE_MAGIC.to_vec();
        head.extend((entries.len() as u64).to_le_bytes());
        let table: usize = entries.iter().map(|(t, _)| 24 + t.len()).sum();
        let mut off = head.len() + table;
        let mut body: Vec<u8> = Vec::new();
        for (t, data) in entries {
            head.extend((off as u64).to_le_bytes());
            head.extend((data.len() as u64).to_le_bytes());
            head.extend((t.len() as u64).to_le_bytes());
            head.extend(t.as_bytes());
            body.extend(*data);
            off += data.len();
        }
        head.extend(body);
        head
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn env_file_missing_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.hsaco");
        let m = missing.clone();
        let err = resolve_with(
            &SPEC,
            "gfx90a",
            |k| (k == "Q4_K_DEQUANT_HSACO").then(|| m.clone().into_os_string()),
            &[],
            dir.path(),
        )
        .unwrap_err();
        match &err {
            GpuError::CodeObject { path, reason } => {
                assert_eq!(path, &missing);
                assert!(reason.contains("Q4_K_DEQUANT_HSACO"), "{reason}");
            }
            other => panic!("expected CodeObject, got {other:?}"),
        }
        assert!(err.to_string().contains("nope.hsaco"), "{err}");
    }

    #[test]
    fn env_file_garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.hsaco");
        std::fs::write(&garbage, b"this is not a code object at all, honestly").unwrap();
        let g = garbage.clone();
        let err = resolve_with(
            &SPEC,
            "gfx90a",
            |k| (k == "Q4_K_DEQUANT_HSACO").then(|| g.clone().into_os_string()),
            &[],
            dir.path(),
        )
        .unwrap_err();
        match &err {
            GpuError::CodeObject { path, reason } => {
                assert_eq!(path, &garbage);
                assert!(reason.contains("not an ELF"), "{reason}");
            }
            other => panic!("expected CodeObject, got {other:?}"),
        }
        // An ELF of another machine (x86-64 here) is refused too.
        let mut x86 = fake_hsaco(0x3f);
        x86[18..20].copy_from_slice(&62u16.to_le_bytes());
        std::fs::write(&garbage, &x86).unwrap();
        let g = garbage.clone();
        let err = resolve_with(
            &SPEC,
            "gfx90a",
            |_| Some(g.clone().into_os_string()),
            &[],
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("e_machine is 62"), "{err}");
    }

    #[test]
    fn env_file_for_another_arch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("q4k.hsaco");
        std::fs::write(&f, fake_hsaco(0x30)).unwrap();
        let g = f.clone();
        let err = resolve_with(
            &SPEC,
            "gfx90a",
            |_| Some(g.clone().into_os_string()),
            &[],
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("built for gfx908"), "{err}");
        // The same file is accepted for its own architecture, and wins over embedded objects.
        let emb = [Embedded {
            format: "q4_k",
            arch: "gfx908",
            bytes: b"embedded",
        }];
        let co = resolve_with(
            &SPEC,
            "gfx908",
            |_| Some(g.clone().into_os_string()),
            &emb,
            dir.path(),
        )
        .unwrap();
        assert!(co.from_env);
        assert_eq!(co.path, f);
        assert_eq!(co.arch, "gfx908");
    }

    #[test]
    fn embedded_objects_are_picked_by_format_and_arch() {
        static A: [u8; 64] = {
            let mut b = [0u8; 64];
            b[0] = 0x7f;
            b[1] = b'E';
            b[2] = b'L';
            b[3] = b'F';
            b[4] = 2;
            b[5] = 1;
            b[18] = 224;
            b[48] = 0x3f;
            b
        };
        let emb = [
            Embedded {
                format: "q4_0",
                arch: "gfx90a",
                bytes: b"wrong format",
            },
            Embedded {
                format: "q4_k",
                arch: "gfx90a",
                bytes: &A,
            },
        ];
        let dir = Path::new("/k");
        let co = resolve_with(&SPEC, "gfx90a", no_env, &emb, dir).unwrap();
        assert!(!co.from_env);
        assert_eq!(co.path, Path::new("/k/q4_k/gfx90a.hsaco"));
        assert_eq!(&*co.bytes, &A[..]);

        // An empty variable counts as unset.
        let co = resolve_with(&SPEC, "gfx90a", |_| Some(OsString::new()), &emb, dir).unwrap();
        assert!(!co.from_env);

        let err = resolve_with(&SPEC, "gfx942", no_env, &emb, dir).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/k/q4_k/gfx942.hsaco"), "{msg}");
        assert!(msg.contains("cargo xtask build-kernels"), "{msg}");
        assert!(msg.contains("embedded: gfx90a"), "{msg}");
    }

    #[test]
    fn bundles_are_unwrapped() {
        let a = fake_hsaco(0x3f);
        let b = fake_hsaco(0x2f);
        let bun = bundle(&[
            ("host-x86_64-unknown-linux-gnu", &[]),
            ("hipv4-amdgcn-amd-amdhsa--gfx906", &b),
            ("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-", &a),
        ]);
        assert_eq!(inspect(&bun, "gfx90a").unwrap(), "gfx90a");
        assert_eq!(inspect(&bun, "gfx906").unwrap(), "gfx906");
        let err = inspect(&bun, "gfx1030").unwrap_err();
        assert!(err.contains("no entry for gfx1030"), "{err}");
        // Truncations and absurd counts are errors, never panics.
        for cut in 0..bun.len() {
            let _ = inspect(&bun[..cut], "gfx90a");
        }
        let mut huge = BUNDLE_MAGIC.to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        assert!(inspect(&huge, "gfx90a").unwrap_err().contains("truncated"));
    }

    #[test]
    fn damaged_elves_are_refused_with_the_reason() {
        let mut b = fake_hsaco(0x3f);
        assert_eq!(elf_arch(&b).unwrap(), "gfx90a");
        // A section header table past the end: only the 64-byte header was checked before.
        b[40..48].copy_from_slice(&64u64.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&3u16.to_le_bytes());
        let err = elf_arch(&b).unwrap_err();
        assert!(err.contains("section header table"), "{err}");
        assert!(inspect(&b, "gfx90a").is_err());
        let mut be = fake_hsaco(0x3f);
        be[5] = 2;
        assert!(elf_arch(&be).unwrap_err().contains("64-bit little-endian"));
        let unknown = fake_hsaco(0x01);
        assert!(elf_arch(&unknown).unwrap_err().contains("0x1"));
    }

    #[test]
    fn base_arch_strips_features() {
        assert_eq!(base_arch("gfx90a:sramecc+:xnack-"), "gfx90a");
        assert_eq!(base_arch("gfx1030"), "gfx1030");
        assert_eq!(base_arch(""), "");
    }
}
