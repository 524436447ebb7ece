//! Finding `hipcc` and `nvcc`, and the disassemblers that check what they build:
//! `llvm-objdump` (of hipcc's LLVM) and `cuobjdump`.
//!
//! `hipcc` comes from Debian's `hipcc` package (ROCm 5.2), which brings clang, lld and
//! llvm-15 (and so `llvm-objdump-15`); `nvcc` usually from PyPI (`nvidia-cuda-nvcc`), which puts
//! it under `site-packages/nvidia/cu13/bin` and not on `PATH`, where `nvidia-cuda-cuobjdump` puts
//! `cuobjdump` too. All are installed by `.ci/install-toolchains.sh`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::XtaskError;

/// Reads an environment variable (the real one, or a test's).
pub type EnvFn = Box<dyn Fn(&str) -> Option<OsString>>;

/// Where to look: environment variables, and how to ask Python for its `nvidia` packages.
pub struct Search {
    /// Reads an environment variable.
    pub env: EnvFn,
    /// Whether to ask `python3` where the `nvidia` namespace package lives.
    pub ask_python: bool,
    /// Extra fixed directories tried for `hipcc` (`/opt/rocm/bin`).
    pub hip_dirs: Vec<PathBuf>,
}

impl Search {
    /// The real environment.
    pub fn from_env() -> Self {
        Search {
            env: Box::new(|k| std::env::var_os(k)),
            ask_python: true,
            hip_dirs: vec![PathBuf::from("/opt/rocm/bin")],
        }
    }
}

/// An `nvcc` and, for a PyPI install, the CUDA root beside it (for `-L<root>/lib`).
#[derive(Clone, Debug)]
pub struct Nvcc {
    /// The program.
    pub program: PathBuf,
    /// `.../nvidia/cu13` (or `CUDA_HOME`), when known.
    pub root: Option<PathBuf>,
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn on_path(search: &Search, name: &str, looked: &mut Vec<String>) -> Option<PathBuf> {
    let path = (search.env)("PATH")?;
    looked.push("PATH".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Finds `hipcc`: `$HIPCC`, then `PATH`, `$HIP_PATH/bin`, `$ROCM_PATH/bin`, `/opt/rocm/bin`.
pub fn find_hipcc(search: &Search) -> Result<PathBuf, XtaskError> {
    let mut looked = Vec::new();
    if let Some(p) = (search.env)("HIPCC") {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(format!("$HIPCC={}", p.display()));
    }
    if let Some(p) = on_path(search, "hipcc", &mut looked) {
        return Ok(p);
    }
    let mut dirs: Vec<PathBuf> = ["HIP_PATH", "ROCM_PATH"]
        .iter()
        .filter_map(|k| (search.env)(k))
        .map(|r| PathBuf::from(r).join("bin"))
        .collect();
    dirs.extend(search.hip_dirs.iter().cloned());
    for d in dirs {
        let p = d.join("hipcc");
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(d.display().to_string());
    }
    Err(XtaskError::MissingToolchain {
        tool: "hipcc",
        looked: looked.join(", "),
        what: "hipcc compiles the kernels to HSACO for AMD GPUs (Debian packages: hipcc libamdhip64-dev rocm-device-libs).",
        env: "HIPCC",
    })
}

/// What `hipcc --version` says of the clang it drives: `Debian clang version 15.0.6` and
/// `InstalledDir: /usr/bin` give `(Some(15), Some("/usr/bin"))`.
pub fn parse_clang_version(text: &str) -> (Option<u32>, Option<PathBuf>) {
    let major = text.lines().find_map(|l| {
        let at = l.find("clang version ")?;
        let v = &l[at + "clang version ".len()..];
        v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    });
    let dir = text.lines().find_map(|l| {
        let d = l.trim().strip_prefix("InstalledDir:")?.trim();
        (!d.is_empty()).then(|| PathBuf::from(d))
    });
    (major, dir)
}

/// The major LLVM version an `llvm-objdump --version` reports (`LLVM version 15.0.6`).
pub fn parse_llvm_version(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let at = l.find("LLVM version ")?;
        let v = &l[at + "LLVM version ".len()..];
        v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    })
}

/// An `llvm-objdump` and the LLVM major version it reports (when it says).
#[derive(Clone, Debug)]
pub struct Objdump {
    /// The program.
    pub program: PathBuf,
    /// Its LLVM major version.
    pub llvm: Option<u32>,
    /// The major version of the clang `hipcc` drives, when known.
    pub hipcc_llvm: Option<u32>,
}

fn version_of(program: &Path, arg: &str) -> String {
    match Command::new(program).arg(arg).output() {
        Ok(out) => {
            let mut t = String::from_utf8_lossy(&out.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&out.stderr));
            t
        }
        Err(_) => String::new(),
    }
}

/// Finds the `llvm-objdump` of `hipcc`'s LLVM, which knows every architecture hipcc builds
/// for: `$LLVM_OBJDUMP`, else, for the clang major version `N` and `InstalledDir` that
/// `hipcc --version` reports, `<InstalledDir>/llvm-objdump-N`, `/usr/lib/llvm-N/bin/llvm-objdump`
/// (Debian), `<InstalledDir>/llvm-objdump` (a ROCm install), `llvm-objdump-N` on `PATH`, and
/// last a plain `llvm-objdump` on `PATH` (which on Debian may be an older LLVM: an architecture
/// it cannot decode then fails the check, never passes it).
pub fn find_llvm_objdump(search: &Search, hipcc: Option<&Path>) -> Result<Objdump, XtaskError> {
    let (major, dir) = hipcc
        .map(|h| parse_clang_version(&version_of(h, "--version")))
        .unwrap_or((None, None));
    let found = |program: PathBuf| Objdump {
        llvm: parse_llvm_version(&version_of(&program, "--version")),
        hipcc_llvm: major,
        program,
    };
    let mut looked = Vec::new();
    if let Some(p) = (search.env)("LLVM_OBJDUMP") {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(found(p));
        }
        looked.push(format!("$LLVM_OBJDUMP={}", p.display()));
    }
    let mut candidates = Vec::new();
    if let (Some(n), Some(d)) = (major, &dir) {
        candidates.push(d.join(format!("llvm-objdump-{n}")));
    }
    if let Some(n) = major {
        candidates.push(PathBuf::from(format!("/usr/lib/llvm-{n}/bin/llvm-objdump")));
    }
    if let Some(d) = &dir {
        candidates.push(d.join("llvm-objdump"));
    }
    for p in candidates {
        if is_executable(&p) {
            return Ok(found(p));
        }
        looked.push(p.display().to_string());
    }
    if let Some(n) = major {
        if let Some(p) = on_path(search, &format!("llvm-objdump-{n}"), &mut looked) {
            return Ok(found(p));
        }
    }
    if let Some(p) = on_path(search, "llvm-objdump", &mut looked) {
        return Ok(found(p));
    }
    looked.dedup();
    Err(XtaskError::MissingToolchain {
        tool: "llvm-objdump",
        looked: looked.join(", "),
        what: "llvm-objdump disassembles every HSACO to prove it holds no fused multiply-add (Debian: llvm-15, which hipcc pulls in).",
        env: "LLVM_OBJDUMP",
    })
}

/// Finds `cuobjdump`: `$CUOBJDUMP`, then beside `nvcc` (a CUDA toolkit's `bin`, or the PyPI
/// `nvidia/cu13/bin` where `nvidia-cuda-cuobjdump` installs it), `PATH`, `$CUDA_HOME/bin`,
/// `$CUDA_PATH/bin` and the PyPI packages. Its `-sass` runs `nvdisasm`
/// (`nvidia-cuda-nvdisasm`), which it finds in its own folder.
pub fn find_cuobjdump(search: &Search, nvcc: Option<&Nvcc>) -> Result<PathBuf, XtaskError> {
    let mut looked = Vec::new();
    if let Some(p) = (search.env)("CUOBJDUMP") {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(format!("$CUOBJDUMP={}", p.display()));
    }
    if let Some(dir) = nvcc.and_then(|n| n.program.parent()) {
        let p = dir.join("cuobjdump");
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(dir.display().to_string());
    }
    if let Some(p) = on_path(search, "cuobjdump", &mut looked) {
        return Ok(p);
    }
    let mut roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|k| (search.env)(k))
        .map(PathBuf::from)
        .collect();
    roots.extend(python_cuda_roots(search));
    for root in roots {
        let p = root.join("bin").join("cuobjdump");
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(root.join("bin").display().to_string());
    }
    Err(XtaskError::MissingToolchain {
        tool: "cuobjdump",
        looked: looked.join(", "),
        what: "cuobjdump disassembles every cubin to prove it holds no fused multiply-add (PyPI: nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm, ==13.2.*).",
        env: "CUOBJDUMP",
    })
}

/// CUDA roots of the PyPI packages: `<p>/cu13` for each `p` in `nvidia.__path__`.
fn python_cuda_roots(search: &Search) -> Vec<PathBuf> {
    if !search.ask_python {
        return Vec::new();
    }
    let python = (search.env)("PYTHON").unwrap_or_else(|| "python3".into());
    let script = "import nvidia, os\nfor p in nvidia.__path__: print(os.path.join(p, 'cu13'))";
    match Command::new(&python).arg("-c").arg(script).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Finds `nvcc`: `$NVCC`, then `PATH`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, then the PyPI
/// package (`python3 -c 'import nvidia'`, `.../nvidia/cu13/bin/nvcc`).
pub fn find_nvcc(search: &Search) -> Result<Nvcc, XtaskError> {
    let mut looked = Vec::new();
    // The CUDA root of an nvcc at <root>/bin/nvcc.
    let root_of = |p: &Path| -> Option<PathBuf> {
        let root = p.parent()?.parent()?;
        root.join("lib").is_dir().then(|| root.to_path_buf())
    };
    if let Some(p) = (search.env)("NVCC") {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(Nvcc {
                root: root_of(&p),
                program: p,
            });
        }
        looked.push(format!("$NVCC={}", p.display()));
    }
    if let Some(p) = on_path(search, "nvcc", &mut looked) {
        return Ok(Nvcc {
            root: root_of(&p),
            program: p,
        });
    }
    let mut roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|k| (search.env)(k))
        .map(PathBuf::from)
        .collect();
    roots.extend(python_cuda_roots(search));
    if search.ask_python {
        looked.push("python3's nvidia packages".into());
    }
    for root in roots {
        let p = root.join("bin").join("nvcc");
        if is_executable(&p) {
            return Ok(Nvcc {
                program: p,
                root: Some(root),
            });
        }
        looked.push(root.join("bin").display().to_string());
    }
    Err(XtaskError::MissingToolchain {
        tool: "nvcc",
        looked: looked.join(", "),
        what: "nvcc compiles the kernels to cubin for NVIDIA GPUs (PyPI: nvidia-cuda-nvcc, nvidia-nvvm and nvidia-cuda-crt, all ==13.0.*).",
        env: "NVCC",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Search {
        Search {
            env: Box::new(|k| (k == "PATH").then(|| OsString::from("/nonexistent-qf"))),
            ask_python: false,
            hip_dirs: vec![],
        }
    }

    #[test]
    fn missing_hipcc_says_what_to_install() {
        let err = find_hipcc(&empty()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            XtaskError::MissingToolchain { tool: "hipcc", .. }
        ));
        assert!(msg.contains(".ci/install-toolchains.sh"), "{msg}");
        assert!(
            msg.contains("hipcc libamdhip64-dev rocm-device-libs"),
            "{msg}"
        );
    }

    #[test]
    fn missing_nvcc_says_what_to_install() {
        let err = find_nvcc(&empty()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            XtaskError::MissingToolchain { tool: "nvcc", .. }
        ));
        assert!(msg.contains(".ci/install-toolchains.sh"), "{msg}");
        assert!(msg.contains("13.0"), "{msg}");
    }

    #[test]
    fn missing_disassemblers_say_what_to_install() {
        let err = find_llvm_objdump(&empty(), None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            XtaskError::MissingToolchain {
                tool: "llvm-objdump",
                ..
            }
        ));
        assert!(msg.contains(".ci/install-toolchains.sh") && msg.contains("LLVM_OBJDUMP"));
        let err = find_cuobjdump(&empty(), None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            XtaskError::MissingToolchain {
                tool: "cuobjdump",
                ..
            }
        ));
        assert!(
            msg.contains("nvidia-cuda-cuobjdump") && msg.contains("nvdisasm"),
            "{msg}"
        );
    }

    #[test]
    fn version_lines() {
        let hipcc = "HIP version: 5.2.21153-0\nDebian clang version 15.0.6\nTarget: x86_64-pc-linux-gnu\nThread model: posix\nInstalledDir: /usr/bin\n";
        assert_eq!(
            parse_clang_version(hipcc),
            (Some(15), Some(PathBuf::from("/usr/bin")))
        );
        let rocm = "AMD clang version 17.0.0 (https://github.com/RadeonOpenCompute/llvm-project roc-6.0.0)\nInstalledDir: /opt/rocm/llvm/bin";
        assert_eq!(
            parse_clang_version(rocm),
            (Some(17), Some(PathBuf::from("/opt/rocm/llvm/bin")))
        );
        assert_eq!(parse_clang_version("nothing here"), (None, None));
        assert_eq!(
            parse_llvm_version("LLVM (http://llvm.org/):\n  Debian LLVM version 15.0.6\n"),
            Some(15)
        );
        assert_eq!(parse_llvm_version(""), None);
    }

    #[test]
    fn cuobjdump_beside_nvcc_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nvcc = dir.path().join("nvcc");
        let cuobjdump = dir.path().join("cuobjdump");
        for p in [&nvcc, &cuobjdump] {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let nvcc = Nvcc {
            program: nvcc,
            root: None,
        };
        assert_eq!(find_cuobjdump(&empty(), Some(&nvcc)).unwrap(), cuobjdump);
    }

    #[test]
    fn explicit_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("hipcc");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = fake.clone();
        let search = Search {
            env: Box::new(move |k| (k == "HIPCC").then(|| f.clone().into_os_string())),
            ask_python: false,
            hip_dirs: vec![],
        };
        assert_eq!(find_hipcc(&search).unwrap(), fake);
    }
}
