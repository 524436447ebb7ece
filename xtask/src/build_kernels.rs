//! `cargo xtask build-kernels`: every registered format's `kernel.hip`, compiled ahead of time
//! to HSACO (hipcc) and cubin (nvcc), checked (entry points, and the static bit-exactness
//! proof of [`crate::exact`]: no fused multiply-add, denormals kept), and laid out as
//! `<out>/<format>/<arch>.{hsaco,cubin}` for the backends to load or embed.

use std::fmt::Write as _;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use quant_core::{KernelSpec, OutputDType};

use crate::elf::{self, Expect};
use crate::error::XtaskError;
use crate::exact::{self, Checked, Disassemblers, Subject};
use crate::toolchain::{self, Nvcc, Objdump, Search};

/// AMD architectures built: those Debian's ROCm 5.2 has device libraries for, the table
/// `quant_gpu::code_object::AMDGPU_MACH` that every HSACO is checked against.
pub const HIP_ARCHS: [&str; 5] = {
    let m = elf::AMDGPU_MACH;
    [m[0].0, m[1].0, m[2].0, m[3].0, m[4].0]
};
/// NVIDIA SM versions built (A100, H100/H200).
pub const CUDA_SMS: [u32; 2] = [80, 90];

/// One compilation target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// HSACO for an AMD `gfx` architecture.
    Hip(&'static str),
    /// cubin for an NVIDIA SM version.
    Cuda(u32),
}

impl Target {
    /// `gfx90a`, `sm_90`.
    pub fn name(self) -> String {
        match self {
            Target::Hip(a) => a.to_string(),
            Target::Cuda(sm) => format!("sm_{sm}"),
        }
    }

    /// File name of the code object: `gfx90a.hsaco`, `sm_90.cubin`.
    pub fn file_name(self) -> String {
        match self {
            Target::Hip(a) => format!("{a}.hsaco"),
            Target::Cuda(sm) => format!("sm_{sm}.cubin"),
        }
    }

    fn expect(self) -> Expect<'static> {
        match self {
            Target::Hip(a) => Expect::Hsaco(a),
            Target::Cuda(sm) => Expect::Cubin(sm),
        }
    }
}

/// What `build-kernels` should do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Build HSACO.
    pub hip: bool,
    /// Build cubins.
    pub cuda: bool,
    /// Output folder (`target/kernels`).
    pub out: PathBuf,
    /// Compilers run at once.
    pub jobs: usize,
}

/// The compilers found, and the disassemblers that check their output.
pub struct Tools {
    /// `hipcc`, if HIP targets are built.
    pub hipcc: Option<PathBuf>,
    /// `nvcc`, if CUDA targets are built.
    pub nvcc: Option<Nvcc>,
    /// `llvm-objdump` of hipcc's LLVM, if HIP targets are built.
    pub llvm_objdump: Option<Objdump>,
    /// `cuobjdump`, if CUDA targets are built.
    pub cuobjdump: Option<PathBuf>,
}

impl Tools {
    /// Finds the compilers and disassemblers `opts` needs; a missing one is an error that says
    /// what to install.
    pub fn find(opts: &Options, search: &Search) -> Result<Tools, XtaskError> {
        let hipcc = if opts.hip {
            Some(toolchain::find_hipcc(search)?)
        } else {
            None
        };
        let nvcc = if opts.cuda {
            Some(toolchain::find_nvcc(search)?)
        } else {
            None
        };
        let llvm_objdump = match &hipcc {
            Some(h) => Some(toolchain::find_llvm_objdump(search, Some(h))?),
            None => None,
        };
        let cuobjdump = match &nvcc {
            Some(n) => Some(toolchain::find_cuobjdump(search, Some(n))?),
            None => None,
        };
        Ok(Tools {
            hipcc,
            nvcc,
            llvm_objdump,
            cuobjdump,
        })
    }

    /// The disassemblers, as the checks take them.
    pub fn disassemblers(&self) -> Disassemblers<'_> {
        Disassemblers {
            llvm_objdump: self.llvm_objdump.as_ref().map(|o| o.program.as_path()),
            cuobjdump: self.cuobjdump.as_deref(),
        }
    }
}

/// One produced code object.
#[derive(Clone, Debug)]
pub struct Built {
    /// Format (`q4_k`).
    pub format: &'static str,
    /// Source file (`quant-q4k/kernel.hip`).
    pub source: &'static str,
    /// Target.
    pub target: Target,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Entry points verified in it.
    pub entries: usize,
    /// What the bit-exactness checks read: instructions, and (HSACO) kernel descriptors.
    pub checked: Checked,
    /// Compile and check time in seconds.
    pub seconds: f64,
}

/// Every registered format's kernel spec, in type-id order. Fails on a registry with duplicate
/// ids and when no format has kernels at all.
pub fn registered_kernels() -> Result<Vec<&'static KernelSpec>, XtaskError> {
    let registry = quant_core::registry();
    registry.validate()?;
    let mut specs: Vec<&'static KernelSpec> = Vec::new();
    for f in registry.iter() {
        if let Some(k) = f.kernel() {
            if !specs.iter().any(|s| std::ptr::eq(*s, k)) {
                specs.push(k);
            }
        }
    }
    if specs.is_empty() {
        return Err(XtaskError::NoKernels);
    }
    Ok(specs)
}

/// Entry points of a spec, one per output type.
pub fn entries(spec: &KernelSpec) -> Vec<&'static str> {
    OutputDType::ALL.iter().map(|&d| spec.entry(d)).collect()
}

/// Checks that a name is a plain relative path (no `..`, not absolute, not empty).
fn relative(format: &str, what: &str, name: &str) -> Result<PathBuf, XtaskError> {
    let p = Path::new(name);
    let ok = !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(XtaskError::BadSpec {
            format: format.to_string(),
            reason: format!("{what} {name:?} is not a plain relative path"),
        })
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), XtaskError> {
    let io = |source| XtaskError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    fs::write(path, bytes).map_err(io)
}

/// Writes a spec's source and the portability header into `<tmp>/<format>/`, under the
/// source's own file name (so compiler messages name `quant-q4k/kernel.hip`). Returns the
/// staging root of the format and the source path.
pub fn stage(spec: &KernelSpec, tmp: &Path) -> Result<(PathBuf, PathBuf), XtaskError> {
    relative(spec.format, "format", spec.format)?;
    let root = tmp.join(spec.format);
    let src = root.join(relative(spec.format, "file_name", spec.file_name)?);
    write(&src, spec.source.as_bytes())?;
    let dir = src.parent().unwrap_or(&root);
    write(
        &dir.join(quant_core::PORTABILITY_HEADER_NAME),
        quant_core::PORTABILITY_HEADER.as_bytes(),
    )?;
    Ok((root, src))
}

/// Compiles one staged source for one target into `out` and verifies the result (machine,
/// architecture, every entry point of `spec`). Returns the number of entries verified.
pub fn compile_one(
    tools: &Tools,
    spec: &KernelSpec,
    root: &Path,
    src: &Path,
    target: Target,
    out: &Path,
) -> Result<usize, XtaskError> {
    let include = src.parent().unwrap_or(root);
    let (compiler, mut cmd) = match target {
        Target::Hip(arch) => {
            let hipcc = tools.hipcc.as_ref().ok_or_else(|| missing("hipcc"))?;
            let mut c = Command::new(hipcc);
            c.arg("--genco")
                .arg(format!("--offload-arch={arch}"))
                .args(["-O3", "-ffp-contract=off", "--no-gpu-bundle-output"]);
            ("hipcc", c)
        }
        Target::Cuda(sm) => {
            let nvcc = tools.nvcc.as_ref().ok_or_else(|| missing("nvcc"))?;
            let mut c = Command::new(&nvcc.program);
            c.arg("-cubin")
                .arg(format!("-arch=sm_{sm}"))
                .args(quant_core::NVIDIA_EXACT_FLAGS)
                .args(["-O3", "-x", "cu"]);
            if let Some(root) = &nvcc.root {
                c.arg(format!("-L{}", root.join("lib").display()));
            }
            ("nvcc", c)
        }
    };
    cmd.arg("-I").arg(include).arg(src).arg("-o").arg(out);
    let program = PathBuf::from(cmd.get_program());
    let output = cmd
        .output()
        .map_err(|source| XtaskError::Spawn { program, source })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        // Name the source as the repository does, not by its staging path.
        let prefix = format!("{}/", root.display());
        return Err(XtaskError::Compile {
            compiler,
            file: spec.file_name.to_string(),
            target: target.name(),
            status: output.status.to_string(),
            output: text.replace(&prefix, ""),
        });
    }
    let data = fs::read(out).map_err(|source| XtaskError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    elf::verify(out, &data, target.expect(), &entries(spec), spec.file_name)
}

/// Runs the static bit-exactness checks of [`crate::exact`] on one built object (`data`, read
/// from `path`): every instruction of its disassembly, and for HSACO each entry's kernel
/// descriptor. A refused instruction or descriptor is [`XtaskError::NotExact`] naming the
/// format, the target, the kernel and the instruction or field.
pub fn check_exact(
    disassemblers: Disassemblers<'_>,
    spec: &KernelSpec,
    target: Target,
    path: &Path,
    data: &[u8],
) -> Result<Checked, XtaskError> {
    let name = target.name();
    let subject = Subject {
        format: spec.format,
        target: &name,
        file: spec.file_name,
        path,
    };
    let entries = entries(spec);
    match target {
        Target::Hip(_) => {
            let objdump = disassemblers
                .llvm_objdump
                .ok_or_else(|| missing("llvm-objdump"))?;
            exact::check_hsaco(objdump, data, &entries, &subject)
        }
        Target::Cuda(_) => {
            let cuobjdump = disassemblers
                .cuobjdump
                .ok_or_else(|| missing("cuobjdump"))?;
            exact::check_cubin(cuobjdump, &entries, &subject)
        }
    }
}

fn missing(tool: &'static str) -> XtaskError {
    XtaskError::MissingToolchain {
        tool,
        looked: "nowhere (not requested)".into(),
        what: "internal: a target was scheduled without its compiler or disassembler",
        env: "PATH",
    }
}

/// Targets that `opts` asks for.
pub fn targets(opts: &Options) -> Vec<Target> {
    let mut t = Vec::new();
    if opts.hip {
        t.extend(HIP_ARCHS.iter().map(|&a| Target::Hip(a)));
    }
    if opts.cuda {
        t.extend(CUDA_SMS.iter().map(|&sm| Target::Cuda(sm)));
    }
    t
}

/// Builds every spec for every target of `opts`, `opts.jobs` compilers at a time. Each failure
/// is returned (compile errors carry the compiler's output and the source's name); objects that
/// built are in place either way.
pub fn build(
    specs: &[&'static KernelSpec],
    tools: &Tools,
    opts: &Options,
) -> Result<Vec<Result<Built, XtaskError>>, XtaskError> {
    let tmp = tempfile::Builder::new()
        .prefix("qf-kernels-")
        .tempdir()
        .map_err(|source| XtaskError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let mut staged = Vec::new();
    for spec in specs {
        staged.push(stage(spec, tmp.path())?);
    }
    let jobs: Vec<(usize, Target)> = (0..specs.len())
        .flat_map(|i| targets(opts).into_iter().map(move |t| (i, t)))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Built, XtaskError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, target)) = jobs.get(j) else {
                    break;
                };
                let r = build_job(specs[i], &staged[i], tools, target, &opts.out);
                if let Ok(mut v) = results.lock() {
                    v[j] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Err(XtaskError::BadSpec {
                format: "?".into(),
                reason: "a build worker died".into(),
            }))
        })
        .collect())
}

fn build_job(
    spec: &'static KernelSpec,
    (root, src): &(PathBuf, PathBuf),
    tools: &Tools,
    target: Target,
    out_dir: &Path,
) -> Result<Built, XtaskError> {
    let start = Instant::now();
    let dest = out_dir.join(spec.format).join(target.file_name());
    // Never leave an object from an earlier build behind when this one fails.
    match fs::remove_file(&dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(XtaskError::Io { path: dest, source }),
    }
    let scratch = root.join("out").join(target.file_name());
    if let Some(d) = scratch.parent() {
        fs::create_dir_all(d).map_err(|source| XtaskError::Io {
            path: d.to_path_buf(),
            source,
        })?;
    }
    let entries = compile_one(tools, spec, root, src, target, &scratch)?;
    let data = fs::read(&scratch).map_err(|source| XtaskError::Io {
        path: scratch.clone(),
        source,
    })?;
    // Only an object that passes is put in place.
    let checked = check_exact(tools.disassemblers(), spec, target, &scratch, &data)?;
    let partial = dest.with_extension("partial");
    write(&partial, &data)?;
    fs::rename(&partial, &dest).map_err(|source| XtaskError::Io {
        path: dest.clone(),
        source,
    })?;
    Ok(Built {
        format: spec.format,
        source: spec.file_name,
        target,
        path: dest,
        bytes: data.len() as u64,
        entries,
        checked,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The summary table printed at the end, and a line saying what the bit-exactness checks
/// covered.
pub fn summary(results: &[Result<Built, XtaskError>]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<24} {:<8} {:>9} {:>7} {:>6} {:>4} {:>7}  object",
        "format", "source", "target", "bytes", "entries", "insns", "kds", "secs"
    );
    let mut total = Checked::default();
    let (mut hsaco, mut cubins, mut refused) = (0, 0, 0);
    for r in results {
        match r {
            Ok(b) => {
                total.instructions += b.checked.instructions;
                total.descriptors += b.checked.descriptors;
                total.exempted += b.checked.exempted;
                match b.target {
                    Target::Hip(_) => hsaco += 1,
                    Target::Cuda(_) => cubins += 1,
                }
                let _ = writeln!(
                    s,
                    "{:<8} {:<24} {:<8} {:>9} {:>7} {:>6} {:>4} {:>7.1}  {}",
                    b.format,
                    b.source,
                    b.target.name(),
                    b.bytes,
                    b.entries,
                    b.checked.instructions,
                    b.checked.descriptors,
                    b.seconds,
                    b.path.display()
                );
            }
            Err(e) => {
                if matches!(
                    e,
                    XtaskError::NotExact { .. } | XtaskError::Disassembly { .. }
                ) {
                    refused += 1;
                }
                let first = e.to_string();
                let first = first.lines().next().unwrap_or("");
                let _ = writeln!(
                    s,
                    "{:<8} {:<24} {:<8} {:>9} {:>7} {:>6} {:>4} {:>7}  FAILED: {first}",
                    "", "", "", "", "", "", "", ""
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "bit-exactness checks: {} instructions of {hsaco} HSACO (llvm-objdump) and {cubins} cubin(s) \
         (cuobjdump -sass) hold no fused multiply-add or flush-to-zero (besides {} in LLVM's exact \
         24-bit integer division); {} AMD kernel descriptors keep denormals and round to nearest \
         even; {refused} object(s) refused",
        total.instructions, total.exempted, total.descriptors
    );
    s
}

/// Runs the whole command: find compilers, build, print failures and the summary.
pub fn run(opts: &Options) -> Result<Vec<Built>, XtaskError> {
    let specs = registered_kernels()?;
    let tools = Tools::find(opts, &Search::from_env())?;
    if let Some(h) = &tools.hipcc {
        eprintln!("hipcc: {}", h.display());
    }
    if let Some(n) = &tools.nvcc {
        eprintln!("nvcc:  {}", n.program.display());
    }
    if let Some(o) = &tools.llvm_objdump {
        let v = o.llvm.map_or("LLVM ?".to_string(), |v| format!("LLVM {v}"));
        eprintln!("llvm-objdump: {} ({v})", o.program.display());
        if let (Some(have), Some(want)) = (o.llvm, o.hipcc_llvm) {
            if have != want {
                eprintln!(
                    "warning: llvm-objdump is LLVM {have} but hipcc's clang is LLVM {want}: \
                     set LLVM_OBJDUMP to LLVM {want}'s (an architecture it cannot decode fails the check)"
                );
            }
        }
    }
    if let Some(c) = &tools.cuobjdump {
        eprintln!("cuobjdump: {}", c.display());
    }
    eprintln!(
        "building {} format(s) x {} target(s) into {}",
        specs.len(),
        targets(opts).len(),
        opts.out.display()
    );
    let results = build(&specs, &tools, opts)?;
    let total = results.len();
    let mut built = Vec::new();
    let mut failed = 0;
    for r in &results {
        match r {
            Ok(b) => built.push(b.clone()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}\n");
            }
        }
    }
    print!("{}", summary(&results));
    if failed > 0 {
        return Err(XtaskError::Failed { failed, total });
    }
    println!(
        "wrote {} code objects to {}",
        built.len(),
        opts.out.display()
    );
    Ok(built)
}
