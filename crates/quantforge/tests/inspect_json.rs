//! `inspect --json` streams (issue 19, part 1): arrays are written element by element from the
//! reader's compact storage, summarised past 64 elements unless `--full` is given, so the
//! output costs no memory beyond the parsed header and a constant, whatever the array's length.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quantforge::core::GgmlType;
use quantforge::gguf::{GgufWriter, MetaArray, MetaValue};
use serde_json::{json, Value};

/// The length past which `--json` summarises an array (the CLI's documented default).
const HEAD: usize = 64;
/// The array of the issue: 140 MiB of `u8`s, under a 4 GiB address-space limit.
const BIG_LEN: usize = 140 << 20;
const BIG_LIMIT_KIB: usize = 4 << 20;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The element at `i` of the generated arrays: every byte value, in an order that is not the
/// index itself.
fn byte_at(i: usize) -> u8 {
    (i % 251) as u8
}

/// A valid file: `general.architecture`, a `u8` array of `len` elements under `test.big`, and
/// one small F32 tensor.
fn file_with_a_u8_array(dir: &Path, len: usize) -> PathBuf {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("test".into()))
        .unwrap();
    let bytes: Vec<u8> = (0..len).map(byte_at).collect();
    w.add_metadata("test.big", MetaValue::Array(MetaArray::from(bytes)))
        .unwrap();
    w.add_tensor("w", &[8], GgmlType::F32, Cow::Owned(vec![0u8; 32]))
        .unwrap();
    let path = dir.join(format!("u8-array-{len}.gguf"));
    w.write_file(&path).unwrap();
    path
}

/// `inspect` with `args` on `file`, under an address-space limit of `limit_kib` (`ulimit -v`).
#[cfg(unix)]
fn inspect_limited(file: &Path, args: &[&str], limit_kib: usize) -> Output {
    let script = format!(
        "ulimit -v {limit_kib} && exec '{}' inspect {} '{}'",
        env!("CARGO_BIN_EXE_quantforge"),
        args.join(" "),
        file.display()
    );
    Command::new("sh").arg("-c").arg(&script).output().unwrap()
}

/// The file: before, `inspect --json` built a `serde_json::Value` per element (about
/// 32 bytes each, 4.7 GB here) and aborted; now the array is summarised and the command needs
/// about twice the array's bytes (the reader's prefix and its copy).
#[cfg(unix)]
#[test]
fn json_summarises_a_140_mib_array_under_a_4_gib_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f = file_with_a_u8_array(dir.path(), BIG_LEN);
    let o = inspect_limited(&f, &["--json"], BIG_LIMIT_KIB);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{:?}: {err}", o.status);
    let v: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let head: Vec<u8> = (0..HEAD).map(byte_at).collect();
    assert_eq!(
        v["metadata"]["test.big"],
        json!({"type": "u8", "len": BIG_LEN, "truncated": true, "head": head})
    );
    assert_eq!(v["metadata"]["general.architecture"], "test");
    assert_eq!(v["tensors"][0]["name"], "w");
}

/// `--full` writes every element, still streamed: a 2 MiB array under the limit scaled
/// down with it (4 GiB × 2/140, about 58 MiB). Before, its 2 Mi `Value`s needed 64 MiB and more.
#[cfg(unix)]
#[test]
fn json_full_writes_every_element_within_a_proportional_limit() {
    let len = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let f = file_with_a_u8_array(dir.path(), len);
    let o = inspect_limited(&f, &["--json", "--full"], BIG_LIMIT_KIB * len / BIG_LEN);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{:?}: {err}", o.status);
    let v: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let a = v["metadata"]["test.big"]
        .as_array()
        .expect("the whole array");
    assert_eq!(a.len(), len);
    assert!(a.iter().enumerate().all(|(i, x)| *x == byte_at(i)));

    // The text output's `--full` streams too (it built one string per element).
    let o = inspect_limited(&f, &["--full"], BIG_LIMIT_KIB * len / BIG_LEN);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{:?}: {err}", o.status);
    let line = out.lines().find(|l| l.contains("test.big")).unwrap();
    let list = line.split_once("] [").expect("`[u8; N] [...]`").1;
    assert!(
        line.contains(&format!("[u8; {len}] [0, 1, 2,")),
        "{line:.80}"
    );
    assert_eq!(list.split(", ").count(), len);
}

/// The help states the summary's length that the output uses.
#[test]
fn help_documents_the_summary() {
    let o = Command::new(env!("CARGO_BIN_EXE_quantforge"))
        .args(["inspect", "--help"])
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert!(
        out.contains(&format!("up to {HEAD} elements")) && out.contains("\"truncated\": true"),
        "{out}"
    );
}

/// The summary's shape at its edge and inside other arrays; strings escaped exactly; NaN and
/// infinities as `null`, f32 values widened to the f64 that reads back as them.
#[test]
fn json_summary_shape_escapes_and_non_finite_floats() {
    let hostile = "\x1b[2J\"\\\u{9b}\u{202e}\0ok";
    let strs: Vec<String> = (0..HEAD + 1).map(|i| format!("{hostile}{i}")).collect();
    let floats = vec![0.1f32, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
    let nested = vec![
        MetaArray::from(vec![7u32; HEAD]),
        MetaArray::from(strs.clone()),
    ];
    let mut w = GgufWriter::new();
    let mut add = |k: &str, v: MetaValue| w.add_metadata(k, v).unwrap();
    add(
        "a.edge",
        MetaValue::Array(MetaArray::from(vec![1i64; HEAD])),
    );
    add("a.strs", MetaValue::Array(MetaArray::from(strs.clone())));
    add("a.floats", MetaValue::Array(MetaArray::from(floats)));
    add("a.nested", MetaValue::Array(MetaArray::from(nested)));
    add("a.nan", MetaValue::F64(f64::NAN));
    add("a.name", MetaValue::String(hostile.into()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shapes.gguf");
    w.write_file(&path).unwrap();

    let run = |args: &[&str]| -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_quantforge"))
            .arg("inspect")
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o).1);
        serde_json::from_slice(&o.stdout).expect("valid JSON")
    };
    let summary = |s: &[String]| json!({"type": "string", "len": HEAD + 1, "truncated": true, "head": s[..HEAD]});
    let m = &run(&["--json"])["metadata"];
    assert_eq!(m["a.edge"], json!(vec![1; HEAD]));
    assert_eq!(m["a.strs"], summary(&strs));
    assert_eq!(
        m["a.floats"],
        json!([f64::from(0.1f32), null, null, null, -0.0])
    );
    assert_eq!(m["a.nested"], json!([vec![7; HEAD], summary(&strs)]));
    assert_eq!(m["a.nan"], Value::Null);
    assert_eq!(m["a.name"], hostile);
    // Keys in sorted order, as before.
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert!(keys.windows(2).all(|k| k[0] < k[1]), "{keys:?}");

    let m = &run(&["--json", "--full"])["metadata"];
    assert_eq!(m["a.strs"], json!(strs));
    assert_eq!(m["a.nested"], json!([vec![7; HEAD], strs]));
}
