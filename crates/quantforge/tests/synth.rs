//! `quantforge synth`: the written file opens, follows the mix rules, and loads with no
//! fallback; every architecture's every mix reads back and dequantizes to finite values through
//! the registry that the facade fills (a mix some of whose formats are not registered yet is
//! refused, naming the type).

use std::process::{Command, Output};

use quant_synth::{plan, supported_type, Arch, Mix, Size, SynthError};
use quantforge::core::cpu::{dequantize, CpuPath};
use quantforge::core::GgmlType;
use quantforge::gguf::{GgufFile, MetaValue};
// Name every format crate so that the linker keeps it and its registry entry.
use quantforge::{
    quant_float as _, quant_iq1m as _, quant_iq1s as _, quant_iq2s as _, quant_iq2xs as _,
    quant_iq2xxs as _, quant_iq3s as _, quant_iq3xxs as _, quant_iq4nl as _, quant_iq4xs as _,
    quant_mxfp4 as _, quant_nvfp4 as _, quant_q1_0 as _, quant_q2_0 as _, quant_q2k as _,
    quant_q3k as _, quant_q4_0 as _, quant_q4_1 as _, quant_q4k as _, quant_q5_0 as _,
    quant_q5_1 as _, quant_q5k as _, quant_q6k as _, quant_q8_0 as _, quant_tq1_0 as _,
    quant_tq2_0 as _,
};

/// The formats these tests rely on (complete format crates); the mixes that need others are
/// checked once their formats register, and must be refused until then.
const REQUIRED: [GgmlType; 4] = [
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
];

/// Every architecture with each of its mixes.
fn arch_mixes() -> impl Iterator<Item = (Arch, Mix)> {
    Arch::ALL
        .into_iter()
        .flat_map(|a| a.mixes().iter().map(move |&m| (a, m)))
}

/// Whether every tensor type of the mix's test-tiny plan has a linked format.
fn mix_is_linked(arch: Arch, mix: Mix) -> bool {
    let p = plan(arch, Size::TestTiny, mix).unwrap();
    p.tensors.iter().all(|t| supported_type(t.ty))
}

fn qf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantforge"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn synth_test_tiny_q4_k_m_follows_the_mix_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let p = path.to_str().unwrap();
    let o = qf(&[
        "synth",
        "--arch",
        "llama",
        "--params",
        "test-tiny",
        "--mix",
        "q4_k_m",
        "-o",
        p,
        "--seed",
        "42",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("21 tensors") && out.contains("Q4_K 13") && out.contains("Q6_K 3"),
        "{out}"
    );

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.get("general.architecture"),
        Some(&MetaValue::String("llama".into()))
    );
    assert_eq!(f.get("llama.block_count"), Some(&MetaValue::U32(2)));
    assert_eq!(f.get("general.file_type"), Some(&MetaValue::U32(15)));
    assert_eq!(f.tensor_count(), 1 + 2 * 9 + 2);
    for t in f.tensors() {
        let expected = if t.name.ends_with("norm.weight") {
            GgmlType::F32
        } else if t.name == "output.weight"
            // Two layers: use_more_bits picks only layer 1.
            || t.name == "blk.1.attn_v.weight"
            || t.name == "blk.1.ffn_down.weight"
        {
            GgmlType::Q6_K
        } else {
            GgmlType::Q4_K
        };
        assert_eq!(t.ty, expected, "{}", t.name);
    }
    let k = f.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.dims, [256, 128]);
    assert_eq!(f.tensor("blk.0.ffn_down.weight").unwrap().dims, [512, 256]);
    assert_eq!(f.tensor("token_embd.weight").unwrap().dims, [256, 512]);

    let o = qf(&["load", "--device", "cpu", "--quiet", "--no-fallback", p]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("21 tensors") && t.contains("0 fallback(s)"),
        "{t}"
    );
}

#[test]
fn synth_every_mix_loads_and_the_seed_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    for mix in ["q4_0", "q6_k", "f16"] {
        let path = dir.path().join(format!("{mix}.gguf"));
        let p = path.to_str().unwrap();
        let o = qf(&[
            "synth",
            "--params",
            "test-tiny",
            "--mix",
            mix,
            "-o",
            p,
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let o = qf(&["load", "--device", "cpu", "--quiet", "--no-fallback", p]);
        assert!(o.status.success(), "{mix}: {}", text(&o));
    }
    let f = GgufFile::open(dir.path().join("q4_0.gguf")).unwrap();
    assert_eq!(f.tensor("output.weight").unwrap().ty, GgmlType::Q6_K);
    assert_eq!(
        f.tensor("blk.1.ffn_down.weight").unwrap().ty,
        GgmlType::Q4_0
    );
    // Same seed, same bytes; another seed, other bytes.
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    for (path, seed) in [(&a, "5"), (&b, "6")] {
        let o = qf(&[
            "synth",
            "--params",
            "test-tiny",
            "--mix",
            "q6_k",
            "--quiet",
            "--seed",
            seed,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let q6 = std::fs::read(dir.path().join("q6_k.gguf")).unwrap();
    let a = std::fs::read(a).unwrap();
    let b = std::fs::read(b).unwrap();
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
    // q6_k.gguf was written with the default seed 0.
    assert_ne!(q6, a);
    let o = qf(&[
        "synth",
        "--params",
        "test-tiny",
        "--mix",
        "q6_k",
        "--quiet",
        "--seed",
        "5",
        "-o",
        dir.path().join("a2.gguf").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(dir.path().join("a2.gguf")).unwrap(), a);
}

#[test]
fn synth_list_and_bad_arguments() {
    let o = qf(&["synth", "--list"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for s in [
        "test-tiny",
        "Llama-2-7B",
        "Llama-3.1-8B",
        "CodeLlama-34B",
        "Llama-2-70B",
    ] {
        assert!(out.contains(s), "{s}: {out}");
    }
    assert!(out.contains("4.08 GB"), "{out}");
    let o = qf(&["synth", "--params", "9b", "-o", "/nonexistent/x.gguf"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("70b"), "{}", text(&o));
    let o = qf(&["synth", "--params", "test-tiny"]);
    assert!(!o.status.success());
    let o = qf(&[
        "synth",
        "--params",
        "test-tiny",
        "-o",
        "/nonexistent/dir/x.gguf",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/dir"), "{}", text(&o));
}

#[test]
fn synth_help_lists_every_mix() {
    let o = qf(&["synth", "--help"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for mix in Mix::ALL {
        assert!(out.contains(mix.name()), "{mix}: {out}");
    }
    for arch in Arch::ALL {
        assert!(out.contains(arch.name()), "{arch}: {out}");
    }
    assert!(out.contains("120b"), "{out}");
    let o = qf(&[
        "synth",
        "--params",
        "test-tiny",
        "--mix",
        "q4_k_s",
        "-o",
        "x.gguf",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("q3_k_l"), "{}", text(&o));
    // A mix or size the architecture does not have: refused before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let x = out.to_str().unwrap();
    for (args, needle) in [
        (
            ["--arch", "llama", "--params", "7b", "--mix", "mxfp4"],
            "iq1_m",
        ),
        (
            ["--arch", "gpt-oss", "--params", "20b", "--mix", "q4_k_m"],
            "mxfp4",
        ),
        (
            ["--arch", "gpt-oss", "--params", "7b", "--mix", "mxfp4"],
            "120b",
        ),
    ] {
        let mut all = vec!["synth"];
        all.extend(args);
        all.extend(["-o", x]);
        let o = qf(&all);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
        assert!(!out.exists());
    }
}

#[test]
fn synth_list_gpt_oss() {
    let o = qf(&["synth", "--list", "--arch", "gpt-oss"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // The mix defaults to mxfp4 for gpt-oss; 20.91B parameters, 12.10 GB of tensor data.
    for s in [
        "mxfp4",
        "gpt-oss-20b",
        "gpt-oss-120b",
        "4/32",
        "4/128",
        "20.91B",
        "12.10 GB",
    ] {
        assert!(out.contains(s), "{s}: {out}");
    }
    assert!(!out.contains("Llama-2-7B"), "{out}");
}

/// gpt-oss test-tiny in mxfp4 through the CLI (the mix is the default): expert tensors are 3-D
/// MXFP4, the rest Q8_0 and F32, and the file loads without fallback. Until the MXFP4 format
/// registers, the CLI refuses it, naming an expert tensor and the type.
#[test]
fn synth_gpt_oss_test_tiny() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt-oss.gguf");
    let p = path.to_str().unwrap();
    let o = qf(&[
        "synth",
        "--arch",
        "gpt-oss",
        "--params",
        "test-tiny",
        "-o",
        p,
        "--quiet",
    ]);
    if !supported_type(GgmlType::MXFP4) {
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains("ffn_gate_exps") && t.contains("MXFP4"), "{t}");
        assert!(!path.exists());
        eprintln!("MXFP4 not linked yet: refused as it should be");
        return;
    }
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("41 tensors") && out.contains("MXFP4 6") && out.contains("Q8_0 10"),
        "{out}"
    );
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.get("general.architecture"),
        Some(&MetaValue::String("gpt-oss".into()))
    );
    assert_eq!(f.get("general.file_type"), Some(&MetaValue::U32(38)));
    assert_eq!(f.get("gpt-oss.expert_count"), Some(&MetaValue::U32(4)));
    let e = f.tensor("blk.1.ffn_down_exps.weight").unwrap();
    assert_eq!(
        (e.ty, e.dims.as_slice()),
        (GgmlType::MXFP4, &[160, 160, 4][..])
    );
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.ty, q.dims.as_slice()), (GgmlType::Q8_0, &[160, 256][..]));
    let sinks = f.tensor("blk.0.attn_sinks.weight").unwrap();
    assert_eq!((sinks.ty, sinks.dims.as_slice()), (GgmlType::F32, &[4][..]));
    let o = qf(&["load", "--device", "cpu", "--quiet", "--no-fallback", p]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("41 tensors") && t.contains("0 fallback(s)"),
        "{t}"
    );
}

/// A test-tiny model of every architecture's every mix: written by the library, read back with
/// quant-gguf, each tensor of the planned type and shape, every value finite through the
/// registry's checked CPU path; then the CLI writes the same file and `load` takes it with no
/// fallback. A mix some of whose formats are not registered yet is refused, naming the tensor
/// and the type, and nothing is written.
#[test]
fn every_mix_writes_reads_back_and_dequantizes_finite() {
    quantforge::core::registry().require(&REQUIRED).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for (arch, mix) in arch_mixes() {
        let p = plan(arch, Size::TestTiny, mix).unwrap();
        let path = dir.path().join(format!("{arch}-{mix}.gguf"));
        if !mix_is_linked(arch, mix) {
            let missing = p.tensors.iter().find(|t| !supported_type(t.ty)).unwrap();
            let e = quant_synth::write(&p, &path, 1, &mut |_| {}).unwrap_err();
            assert!(
                matches!(&e, SynthError::UnsupportedType { tensor, ty }
                    if *tensor == missing.name && *ty == missing.ty),
                "{arch} {mix}: {e}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains("cannot synthesize") && msg.contains(&missing.ty.to_string()),
                "{arch} {mix}: {msg}"
            );
            assert!(!path.exists());
            eprintln!(
                "{arch} {mix}: {} not linked yet, refused as it should be",
                missing.ty
            );
            continue;
        }
        written.push((arch, mix));
        quant_synth::write(&p, &path, 1, &mut |_| {}).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(
            f.get("general.file_type"),
            Some(&MetaValue::U32(mix.file_type())),
            "{arch} {mix}"
        );
        assert_eq!(
            f.get("general.architecture"),
            Some(&MetaValue::String(arch.name().into()))
        );
        assert_eq!(f.tensor_count(), p.tensors.len(), "{arch} {mix}");
        for t in &p.tensors {
            let info = f.tensor(&t.name).unwrap();
            assert_eq!(
                (info.ty, &info.dims),
                (t.ty, &t.dims),
                "{arch} {mix} {}",
                t.name
            );
            let format = quantforge::core::registry().get(t.ty).unwrap();
            let data = f.tensor_data(&info).unwrap();
            let mut out = vec![0f32; t.n_elements as usize];
            dequantize(format, &data, &mut out, CpuPath::Fast).unwrap();
            let bad = out.iter().position(|x| !x.is_finite());
            assert!(
                bad.is_none(),
                "{arch} {mix} {}: element {bad:?} is {:?}",
                t.name,
                bad.map(|i| out[i])
            );
            assert!(out.iter().any(|&x| x != out[0]), "{arch} {mix} {}", t.name);
        }

        // The CLI writes the same bytes, and the loader takes them without fallback.
        let cli = dir.path().join(format!("{arch}-{mix}-cli.gguf"));
        let c = cli.to_str().unwrap();
        let o = qf(&[
            "synth",
            "--arch",
            arch.name(),
            "--params",
            "test-tiny",
            "--mix",
            mix.name(),
            "--seed",
            "1",
            "--quiet",
            "-o",
            c,
        ]);
        assert!(o.status.success(), "{arch} {mix}: {}", text(&o));
        assert_eq!(std::fs::read(&cli).unwrap(), std::fs::read(&path).unwrap());
        let o = qf(&["load", "--device", "cpu", "--quiet", "--no-fallback", c]);
        let t = text(&o);
        assert!(o.status.success(), "{arch} {mix}: {t}");
        assert!(t.contains("0 fallback(s)"), "{arch} {mix}: {t}");
    }
    for mix in [Mix::F16, Mix::Q4_0, Mix::Q8_0, Mix::Q4KM, Mix::Q6K] {
        assert!(
            written.contains(&(Arch::Llama, mix)),
            "{mix} was not written"
        );
    }
}
