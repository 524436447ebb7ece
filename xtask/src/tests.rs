//! Tests of the build pipeline against the real compilers (installed by
//! `.ci/install-toolchains.sh`), on small kernels of their own, including ones the
//! bit-exactness checks must refuse (fused multiply-adds, flushed denormals).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use quant_core::{BlockGeometry, KernelSpec};

use crate::build_kernels::{self, Options, Target, Tools};
use crate::elf::{self, Expect};
use crate::error::XtaskError;
use crate::exact::{self, Subject};
use crate::toolchain::Search;

const GOOD: &str = r#"#include "qf_portability.h"
QF_EXTERN_C QF_GLOBAL void tst_f32(const uint8_t* src, float* dst, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = QF_MUL(qf_f16_to_f32(src[i]), 2.0f);
}
QF_EXTERN_C QF_GLOBAL void tst_f16(const uint8_t* src, uint16_t* dst, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = qf_f32_to_f16_rne(qf_f16_to_f32(src[i]));
}
QF_EXTERN_C QF_GLOBAL void tst_bf16(const uint8_t* src, uint16_t* dst, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = qf_f32_to_bf16_rne(qf_f16_to_f32(src[i]));
}
"#;

/// One f16 value per block, as the test kernels read them.
const GEOMETRY: BlockGeometry = BlockGeometry {
    block_elems: 1,
    block_bytes: 2,
};

static GOOD_SPEC: KernelSpec = KernelSpec {
    format: "tst",
    file_name: "quant-tst/kernel.hip",
    source: GOOD,
    entry_f32: "tst_f32",
    entry_f16: "tst_f16",
    entry_bf16: "tst_bf16",
    threads_per_group: 64,
    blocks_per_group: 1,
    geometry: GEOMETRY,
};

static MISSING_ENTRY_SPEC: KernelSpec = KernelSpec {
    format: "tstmiss",
    file_name: "quant-tst/kernel.hip",
    source: GOOD,
    entry_f32: "tst_f32",
    entry_f16: "tst_f16",
    entry_bf16: "tst_bf16_not_there",
    threads_per_group: 64,
    blocks_per_group: 1,
    geometry: GEOMETRY,
};

static BROKEN_SPEC: KernelSpec = KernelSpec {
    format: "tstbad",
    file_name: "quant-bad/kernel.hip",
    source: "#include \"qf_portability.h\"\nQF_EXTERN_C QF_GLOBAL void k(float* d) { d[0] = undeclared_thing; }\n",
    entry_f32: "k",
    entry_f16: "k",
    entry_bf16: "k",
    threads_per_group: 64,
    blocks_per_group: 1,
    geometry: GEOMETRY,
};

/// Like `GOOD`, but the f32 kernel computes `x * x + 1` as one fused multiply-add.
const FUSED: &str = r#"#include "qf_portability.h"
QF_EXTERN_C QF_GLOBAL void tstfma_f32(const uint8_t* src, float* dst, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float x = qf_f16_to_f32(src[i]); dst[i] = __fmaf_rn(x, x, 1.0f); }
}
QF_EXTERN_C QF_GLOBAL void tstfma_f16(const uint8_t* src, uint16_t* dst, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = qf_f32_to_f16_rne(qf_f16_to_f32(src[i]));
}
QF_EXTERN_C QF_GLOBAL void tstfma_bf16(const uint8_t* src, uint16_t* dst, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = qf_f32_to_bf16_rne(qf_f16_to_f32(src[i]));
}
"#;

static FUSED_SPEC: KernelSpec = KernelSpec {
    format: "tstfma",
    file_name: "quant-tstfma/kernel.hip",
    source: FUSED,
    entry_f32: "tstfma_f32",
    entry_f16: "tstfma_f16",
    entry_bf16: "tstfma_bf16",
    threads_per_group: 64,
    blocks_per_group: 1,
    geometry: GEOMETRY,
};

/// `a * b + c` written plainly: separately rounded unless the compiler is told to contract.
const MUL_ADD: &str = r#"#include "qf_portability.h"
QF_EXTERN_C QF_GLOBAL void mul_add(const float* a, const float* b, float* c, uint64_t n) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] * b[i] + c[i];
}
"#;

fn opts(hip: bool, cuda: bool, out: &std::path::Path) -> Options {
    Options {
        hip,
        cuda,
        out: out.to_path_buf(),
        jobs: 2,
    }
}

fn tools(hip: bool, cuda: bool) -> Tools {
    let o = opts(hip, cuda, std::path::Path::new("."));
    Tools::find(&o, &Search::from_env())
        .unwrap_or_else(|e| panic!("toolchain missing for this test: {e}"))
}

/// The toolchain of one vendor, or `None` after a `SKIPPED:` line on stderr (written to the
/// handle directly: libtest captures `eprintln!` of passing tests).
fn tools_or_skip(hip: bool, test: &str) -> Option<Tools> {
    let o = opts(hip, !hip, Path::new("."));
    match Tools::find(&o, &Search::from_env()) {
        Ok(t) => Some(t),
        Err(e) => {
            use std::io::Write;
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("");
            let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {first}");
            None
        }
    }
}

/// Compiles `source` (with the portability header beside it) with `compiler` and `args` into
/// `<dir>/<out>`, outside build-kernels (so with flags it would never use).
fn compile_raw(compiler: &Path, args: &[&str], source: &str, dir: &Path, out: &str) -> PathBuf {
    fs::write(dir.join("k.hip"), source).unwrap();
    fs::write(
        dir.join(quant_core::PORTABILITY_HEADER_NAME),
        quant_core::PORTABILITY_HEADER,
    )
    .unwrap();
    let dest = dir.join(out);
    let output = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(dir)
        .arg(dir.join("k.hip"))
        .arg("-o")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        compiler.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    dest
}

fn hsaco_check(tools: &Tools, path: &Path, entry: &str) -> Result<exact::Checked, XtaskError> {
    let data = fs::read(path).unwrap();
    let subject = Subject {
        format: "raw",
        target: "gfx90a",
        file: "k.hip",
        path,
    };
    let objdump = tools.llvm_objdump.as_ref().unwrap();
    exact::check_hsaco(&objdump.program, &data, &[entry], &subject)
}

fn cubin_check(tools: &Tools, path: &Path, entry: &str) -> Result<exact::Checked, XtaskError> {
    let subject = Subject {
        format: "raw",
        target: "sm_80",
        file: "k.hip",
        path,
    };
    exact::check_cubin(tools.cuobjdump.as_ref().unwrap(), &[entry], &subject)
}

fn nvcc_args<'a>(tools: &'a Tools, flags: &[&'a str], lib: &'a mut String) -> Vec<&'a str> {
    let nvcc = tools.nvcc.as_ref().unwrap();
    let mut args = vec!["-cubin", "-arch=sm_80", "-O3", "-x", "cu"];
    args.extend_from_slice(flags);
    if let Some(root) = &nvcc.root {
        *lib = format!("-L{}", root.join("lib").display());
        args.push(lib.as_str());
    }
    args
}

#[test]
fn contracted_mul_add_is_refused_on_amd() {
    let Some(tools) = tools_or_skip(true, "contracted_mul_add_is_refused_on_amd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hipcc = tools.hipcc.as_ref().unwrap();
    let hip = |contract: &'static str| {
        vec![
            "--genco",
            "--offload-arch=gfx90a",
            "-O3",
            contract,
            "--no-gpu-bundle-output",
        ]
    };
    // Contraction off (build-kernels' flags): separate multiply and add, accepted.
    let off = compile_raw(
        hipcc,
        &hip("-ffp-contract=off"),
        MUL_ADD,
        dir.path(),
        "off.hsaco",
    );
    let checked = hsaco_check(&tools, &off, "mul_add").unwrap();
    assert!(
        checked.instructions > 5 && checked.descriptors == 1,
        "{checked:?}"
    );
    // Contraction on: hipcc fuses `a*b+c` into v_fma/v_fmac, which the check refuses.
    let fast = compile_raw(
        hipcc,
        &hip("-ffp-contract=fast"),
        MUL_ADD,
        dir.path(),
        "fast.hsaco",
    );
    let err = hsaco_check(&tools, &fast, "mul_add").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, XtaskError::NotExact { .. }), "{msg}");
    assert!(msg.contains("`mul_add`") && msg.contains("gfx90a"), "{msg}");
    assert!(msg.contains("`v_fma"), "{msg}");
    // Denormals flushed: the descriptor says so, and the check refuses it.
    let mut args = hip("-ffp-contract=off");
    args.push("-fgpu-flush-denormals-to-zero");
    let ftz = compile_raw(hipcc, &args, MUL_ADD, dir.path(), "ftz.hsaco");
    let err = hsaco_check(&tools, &ftz, "mul_add").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, XtaskError::NotExact { .. }), "{msg}");
    assert!(msg.contains("FLOAT_DENORM_MODE_32 = 0"), "{msg}");
}

#[test]
fn contracted_mul_add_is_refused_on_nvidia() {
    let Some(tools) = tools_or_skip(false, "contracted_mul_add_is_refused_on_nvidia") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nvcc = &tools.nvcc.as_ref().unwrap().program;
    let mut lib = String::new();
    let exact_flags = nvcc_args(&tools, &quant_core::NVIDIA_EXACT_FLAGS, &mut lib);
    let off = compile_raw(nvcc, &exact_flags, MUL_ADD, dir.path(), "off.cubin");
    assert!(cubin_check(&tools, &off, "mul_add").unwrap().instructions > 5);

    let mut lib = String::new();
    let fmad = nvcc_args(&tools, &["--fmad=true"], &mut lib);
    let fast = compile_raw(nvcc, &fmad, MUL_ADD, dir.path(), "fast.cubin");
    let err = cubin_check(&tools, &fast, "mul_add").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, XtaskError::NotExact { .. }), "{msg}");
    assert!(msg.contains("`mul_add`") && msg.contains("sm_80"), "{msg}");
    assert!(msg.contains("FFMA"), "{msg}");

    let mut lib = String::new();
    let ftz = nvcc_args(&tools, &["--fmad=false", "-ftz=true"], &mut lib);
    let ftz = compile_raw(nvcc, &ftz, MUL_ADD, dir.path(), "ftz.cubin");
    let err = cubin_check(&tools, &ftz, "mul_add").unwrap_err();
    assert!(err.to_string().contains(".FTZ"), "{err}");
}

#[test]
fn a_fused_kernel_fails_build_kernels_and_leaves_no_object() {
    let test = "a_fused_kernel_fails_build_kernels_and_leaves_no_object";
    let (Some(_), Some(_)) = (tools_or_skip(true, test), tools_or_skip(false, test)) else {
        return;
    };
    let tools = tools(true, true);
    let out = tempfile::tempdir().unwrap();
    let results =
        build_kernels::build(&[&FUSED_SPEC], &tools, &opts(true, true, out.path())).unwrap();
    assert_eq!(results.len(), 7);
    for r in &results {
        match r {
            Err(XtaskError::NotExact {
                format,
                target,
                kernel,
                what,
                file,
            }) => {
                assert_eq!(format, "tstfma");
                assert_eq!(kernel, "tstfma_f32");
                assert_eq!(file, "quant-tstfma/kernel.hip");
                let fused = if target.starts_with("gfx") {
                    what.contains("v_fma")
                } else {
                    what.contains("FFMA")
                };
                assert!(fused, "{target}: {what}");
            }
            other => panic!("expected NotExact, got {other:?}"),
        }
    }
    assert!(!out.path().join("tstfma").join("gfx90a.hsaco").exists());
    assert!(!out.path().join("tstfma").join("sm_90.cubin").exists());
    let table = build_kernels::summary(&results);
    assert!(table.contains("7 object(s) refused"), "{table}");
    assert!(table.contains("not bit-exact"), "{table}");
}

#[test]
fn registry_lists_the_kernel_formats() {
    let specs = build_kernels::registered_kernels().unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.format).collect();
    for want in ["q4_0", "q4_k", "q6_k"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for s in &specs {
        assert_eq!(build_kernels::entries(s).len(), 3);
    }
}

#[test]
fn builds_and_verifies_hsaco_and_cubin() {
    let tools = tools(true, true);
    let out = tempfile::tempdir().unwrap();
    let results =
        build_kernels::build(&[&GOOD_SPEC], &tools, &opts(true, true, out.path())).unwrap();
    assert_eq!(results.len(), 7);
    for r in &results {
        let b = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.entries, 3);
        // The bit-exactness checks read every kernel's code (and an HSACO's descriptors).
        assert!(b.checked.instructions >= 3, "{b:?}");
        let kds = if matches!(b.target, Target::Hip(_)) {
            3
        } else {
            0
        };
        assert_eq!(b.checked.descriptors, kds, "{b:?}");
        let expected = out.path().join("tst").join(b.target.file_name());
        assert_eq!(b.path, expected);
        let data = fs::read(&expected).unwrap();
        let machine = u16::from_le_bytes([data[18], data[19]]);
        match b.target {
            Target::Hip(_) => assert_eq!(machine, elf::EM_AMDGPU),
            Target::Cuda(_) => assert_eq!(machine, elf::EM_CUDA),
        }
    }
    let table = build_kernels::summary(&results);
    assert!(
        table.contains("gfx1030") && table.contains("sm_90"),
        "{table}"
    );
    assert!(
        table.contains("of 5 HSACO") && table.contains("2 cubin(s)"),
        "{table}"
    );
    assert!(table.contains("15 AMD kernel descriptors"), "{table}");

    // An object checked against the wrong architecture is refused.
    let p = out.path().join("tst/gfx90a.hsaco");
    let data = fs::read(&p).unwrap();
    let err = elf::verify(&p, &data, Expect::Hsaco("gfx908"), &["tst_f32"], "x").unwrap_err();
    assert!(err.to_string().contains("gfx90a"), "{err}");
    let p = out.path().join("tst/sm_80.cubin");
    let data = fs::read(&p).unwrap();
    let err = elf::verify(&p, &data, Expect::Cubin(90), &["tst_f32"], "x").unwrap_err();
    assert!(err.to_string().contains("sm_80"), "{err}");
    // And an HSACO is no cubin.
    let err = elf::verify(&p, &data, Expect::Hsaco("gfx90a"), &["tst_f32"], "x").unwrap_err();
    assert!(err.to_string().contains("AMDGPU"), "{err}");
}

#[test]
fn missing_entry_point_fails_and_leaves_no_object() {
    let tools = tools(true, true);
    let out = tempfile::tempdir().unwrap();
    // A stale object from an "earlier build" must not survive a failed one.
    let stale = out.path().join("tstmiss/gfx90a.hsaco");
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    fs::write(&stale, b"stale").unwrap();
    let results = build_kernels::build(
        &[&MISSING_ENTRY_SPEC],
        &tools,
        &opts(true, true, out.path()),
    )
    .unwrap();
    for r in results {
        match r {
            Err(XtaskError::MissingEntry { entry, file, .. }) => {
                assert!(entry.starts_with("tst_bf16_not_there"), "{entry}");
                assert_eq!(file, "quant-tst/kernel.hip");
            }
            other => panic!("expected MissingEntry, got {other:?}"),
        }
    }
    assert!(!stale.exists());
}

#[test]
fn compiler_errors_carry_output_and_file_name() {
    let tools = tools(true, true);
    let out = tempfile::tempdir().unwrap();
    let results =
        build_kernels::build(&[&BROKEN_SPEC], &tools, &opts(true, true, out.path())).unwrap();
    assert_eq!(results.len(), 7);
    for r in results {
        let err = r.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, XtaskError::Compile { .. }), "{msg}");
        assert!(msg.contains("quant-bad/kernel.hip"), "{msg}");
        assert!(msg.contains("undeclared_thing"), "{msg}");
        // The staging folder is not what the user sees.
        assert!(!msg.contains("qf-kernels-"), "{msg}");
    }
}

#[test]
fn unsafe_file_names_are_refused() {
    static EVIL: KernelSpec = KernelSpec {
        format: "evil",
        file_name: "../../etc/kernel.hip",
        source: GOOD,
        entry_f32: "a",
        entry_f16: "b",
        entry_bf16: "c",
        threads_per_group: 64,
        blocks_per_group: 1,
        geometry: GEOMETRY,
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = build_kernels::stage(&EVIL, tmp.path()).unwrap_err();
    assert!(matches!(err, XtaskError::BadSpec { .. }), "{err}");
}

#[test]
fn target_selection() {
    let p = std::path::Path::new("x");
    assert_eq!(build_kernels::targets(&opts(true, false, p)).len(), 5);
    assert_eq!(
        build_kernels::targets(&opts(false, true, p)),
        vec![Target::Cuda(80), Target::Cuda(90)]
    );
    assert_eq!(build_kernels::targets(&opts(true, true, p)).len(), 7);
    assert_eq!(Target::Hip("gfx90a").file_name(), "gfx90a.hsaco");
    assert_eq!(Target::Cuda(80).file_name(), "sm_80.cubin");
}
