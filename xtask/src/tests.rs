//! Tests of the build pipeline against the real compilers (installed by
//! `.ci/install-toolchains.sh`), on small kernels of their own.

use std::fs;

use quant_core::{BlockGeometry, KernelSpec};

use crate::build_kernels::{self, Options, Target, Tools};
use crate::elf::{self, Expect};
use crate::error::XtaskError;
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
    hsaco_env: "TST_DEQUANT_HSACO",
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
    hsaco_env: "TST_DEQUANT_HSACO",
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
    hsaco_env: "TST_DEQUANT_HSACO",
    threads_per_group: 64,
    blocks_per_group: 1,
    geometry: GEOMETRY,
};

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
        hsaco_env: "X",
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
