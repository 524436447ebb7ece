//! `quantforge synth`: the written file opens, follows the mix rules, and loads with no
//! fallback.

use std::process::{Command, Output};

use quantforge::core::GgmlType;
use quantforge::gguf::{GgufFile, MetaValue};

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
    assert_eq!(f.tensors().len(), 1 + 2 * 9 + 2);
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
