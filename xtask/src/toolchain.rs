//! Finding `hipcc` and `nvcc`.
//!
//! `hipcc` comes from Debian's `hipcc` package (ROCm 5.2), `nvcc` usually from PyPI
//! (`nvidia-cuda-nvcc`), which puts it under `site-packages/nvidia/cu13/bin` and not on `PATH`.
//! Both are installed by `.ci/install-toolchains.sh`.

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
