//! The non-quantized types through the `quantforge` binary, on the CPU: `dequant` copies
//! integer tensors unchanged with their type and rounds F64 to f32; `load` keeps integers and
//! says so; `verify` skips them with a note; `inspect` lists them like any tensor.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quantforge::core::GgmlType;
use quantforge::gguf::{GgufFile, GgufWriter, MetaValue};

fn qf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantforge"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// F64 bits and the f32 bits they round to (nearest, ties to even; NaNs quieted, top payload
/// bits kept).
const F64_BITS: [(u64, u32); 8] = [
    (0x3FF0_0000_1000_0000, 0x3F80_0000), // 1 + 2^-24: a tie, to even 1.0
    (0x3FD5_5555_5555_5555, 0x3EAA_AAAB), // 1/3
    (0x47EF_FFFF_F000_0000, 0x7F80_0000), // overflows to +inf
    (0x3690_0000_0000_0000, 0x0000_0000), // 2^-150: to even zero
    (0x36A8_0000_0000_0000, 0x0000_0002), // 3*2^-150: to even 2*2^-149
    (0x8000_0000_0000_0000, 0x8000_0000), // -0.0
    (0x7FF0_0000_2000_0001, 0x7FC0_0001), // signalling NaN
    (0xC000_0000_0000_0000, 0xC000_0000), // -2.0
];

struct File {
    path: PathBuf,
    i32: Vec<u8>,
    i8: Vec<u8>,
    f32: Vec<u8>,
}

/// A small file holding an F64, an I8, an I32 and an F32 tensor.
fn write(dir: &Path) -> File {
    let i32: Vec<u8> = [0i32, -1, i32::MAX, i32::MIN, 17, 5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let i8: Vec<u8> = [-128i8, -1, 0, 1, 127].iter().map(|&v| v as u8).collect();
    let f32: Vec<u8> = [0.5f32, -0.0, 2.0, f32::INFINITY]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f64: Vec<u8> = F64_BITS.iter().flat_map(|c| c.0.to_le_bytes()).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("test".into()))
        .unwrap();
    w.add_tensor("rope.f64", &[8], GgmlType::F64, Cow::Owned(f64))
        .unwrap();
    w.add_tensor("tok.ids", &[3, 2], GgmlType::I32, Cow::Owned(i32.clone()))
        .unwrap();
    w.add_tensor("mask", &[5], GgmlType::I8, Cow::Owned(i8.clone()))
        .unwrap();
    w.add_tensor("norm.weight", &[4], GgmlType::F32, Cow::Owned(f32.clone()))
        .unwrap();
    let path = dir.join("mixed.gguf");
    w.write_file(&path).unwrap();
    File { path, i32, i8, f32 }
}

#[test]
fn dequant_copies_integers_unchanged_and_rounds_f64() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path());
    let out = dir.path().join("out.gguf");
    let o = qf(&[
        "dequant",
        f.path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("kept 2 integer tensor(s)") && err.contains("tok.ids (I32)"),
        "{err}"
    );
    let g = GgufFile::open(&out).unwrap();
    let names: Vec<&str> = g.tensor_names().collect();
    assert_eq!(names, ["rope.f64", "tok.ids", "mask", "norm.weight"]);
    let tensor = |name: &str| {
        let t = g.tensor(name).unwrap();
        (
            t.ty,
            t.dims.clone(),
            g.tensor_data(&t).unwrap().into_owned(),
        )
    };
    assert_eq!(tensor("tok.ids"), (GgmlType::I32, vec![3, 2], f.i32));
    assert_eq!(tensor("mask"), (GgmlType::I8, vec![5], f.i8));
    assert_eq!(tensor("norm.weight"), (GgmlType::F32, vec![4], f.f32));
    let (ty, dims, bytes) = tensor("rope.f64");
    assert_eq!((ty, dims), (GgmlType::F32, vec![8]));
    let got: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let want: Vec<u32> = F64_BITS.iter().map(|c| c.1).collect();
    assert_eq!(got, want);
    // Rust's rounding agrees with the table for every value that is not a NaN.
    for (bits, w) in F64_BITS {
        let x = f64::from_bits(bits);
        if !x.is_nan() {
            assert_eq!((x as f32).to_bits(), w, "{bits:#018x}");
        }
    }
    assert_eq!(
        g.get("general.architecture").unwrap().as_str(),
        Some("test")
    );
}

#[test]
fn load_keeps_integers_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path());
    let o = qf(&["load", "--device", "cpu", f.path.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"))
            .to_string()
    };
    assert!(line("tok.ids").ends_with("kept as I32"), "{out}");
    assert!(line("mask").ends_with("kept as I8"), "{out}");
    assert!(line("rope.f64").ends_with("cpu"), "{out}");
    assert!(
        out.contains("kept: 2 integer tensor(s) as they are") && out.contains("0 fallback"),
        "{out}"
    );
}

#[test]
fn verify_skips_integers_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path());
    let o = qf(&["verify", "--device", "cpu", f.path.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("tok.ids") && l.contains("skipped: integer")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("rope.f64") && l.ends_with("bit-exact")),
        "{out}"
    );
    assert!(out.contains("2 integer tensor(s) skipped"), "{out}");
}

#[test]
fn inspect_lists_integer_tensors_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path());
    let o = qf(&["inspect", "--json", f.path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "tok.ids")
        .unwrap();
    assert_eq!(t["type"], "I32");
    assert_eq!(t["type_id"], 26);
    assert_eq!(t["bytes"], 24);
    let o = qf(&["inspect", f.path.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert!(
        out.contains("mask") && out.contains("I8") && out.contains("F64"),
        "{out}"
    );
}
