//! The `quantforge` binary, end to end on the CPU (CI has no GPU).

use std::path::PathBuf;
use std::process::{Command, Output};

use quantforge::gguf::GgufFile;
use sha2::{Digest, Sha256};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

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

fn manifest(name: &str) -> Vec<(String, String, String)> {
    std::fs::read_to_string(data(name))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn inspect_prints_metadata_and_tensors_as_text_and_json() {
    let f = data("tiny-llama-q4_k_m.gguf");
    let o = qf(&["inspect", f.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("general.architecture")
            && out.contains("token_embd.weight")
            && out.contains("Q4_K"),
        "{out}"
    );

    let o = qf(&["inspect", "--json", f.to_str().unwrap()]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), manifest("tiny-llama-q4_k_m.sha256").len());
    let t = tensors
        .iter()
        .find(|t| t["name"] == "token_embd.weight")
        .unwrap();
    assert_eq!(t["type"], "Q4_K");
    assert_eq!(t["shape"], serde_json::json!([256, 256]));
    // 256 rows of one 144-byte super-block each.
    assert_eq!(t["bytes"], 144 * 256);
    assert_eq!(v["metadata"]["general.architecture"], "llama");
}

#[test]
fn dequant_writes_f32_gguf_with_ggml_bits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let src = data("tiny-llama-q4_k_m.gguf");
    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let f = GgufFile::open(&out).unwrap();
    let orig = GgufFile::open(&src).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata().len(), orig.metadata().len(), "metadata copied");
    for (sha, name, _) in manifest("tiny-llama-q4_k_m.sha256") {
        let t = f.tensor(&name).unwrap();
        assert_eq!(t.ty.to_string(), "F32");
        assert_eq!(t.dims, orig.tensor(&name).unwrap().dims);
        let got: String = Sha256::digest(f.tensor_data(&t).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, sha, "{name}");
    }
}

/// A file with a tensor of a type ggml defines but cannot dequantize (Q8_K, an intermediate
/// type of its dot products) between two F32 tensors.
fn file_with_an_unsupported_type(dir: &std::path::Path) -> PathBuf {
    use quantforge::core::{random_bytes, GgmlType};
    use std::borrow::Cow;
    let mut w = quantforge::gguf::GgufWriter::new();
    let ones: Vec<u8> = (0..256).flat_map(|_| 1f32.to_le_bytes()).collect();
    w.add_tensor("a.weight", &[256], GgmlType::F32, Cow::Owned(ones.clone()))
        .unwrap();
    w.add_tensor(
        "q8k.weight",
        &[256, 2],
        GgmlType::Q8_K,
        Cow::Owned(random_bytes(2 * 292, 5)),
    )
    .unwrap();
    w.add_tensor("z.weight", &[256], GgmlType::F32, Cow::Owned(ones))
        .unwrap();
    let path = dir.join("q8k.gguf");
    w.write_file(&path).unwrap();
    path
}

#[test]
fn dequant_of_an_unsupported_type_fails_or_skips_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let src = file_with_an_unsupported_type(dir.path());
    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("Q8_K") && err.contains("q8k.weight"), "{err}");
    assert!(!out.exists());

    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--skip-unsupported",
    ]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("left out") && err.contains("Q8_K"), "{err}");
    let f = GgufFile::open(&out).unwrap();
    let names: Vec<&str> = f.tensor_names().collect();
    assert_eq!(names, ["a.weight", "z.weight"]);
}

#[test]
fn dequant_selects_tensors_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("one.gguf");
    let src = data("tiny-llama-q6_k.gguf");
    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--tensor",
        "output.weight",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.tensor_count(), 1);
    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--tensor",
        "nope",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("nope"));
}

#[test]
fn load_without_a_file_loads_the_repository_model_on_the_cpu() {
    let o = qf(&["load", "--device", "cpu"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("tiny-llama-q4_k_m.gguf")
            && out.contains("total:")
            && out.contains("0 fallback"),
        "{out}"
    );
    assert!(out.contains("token_embd.weight"));
}

#[test]
fn verify_on_the_cpu_holds_the_fast_path_to_the_reference() {
    let o = qf(&[
        "verify",
        "--device",
        "cpu",
        data("all-types.gguf").to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("bit-exact") && out.contains("unsupported type"),
        "{out}"
    );
    assert!(!out.contains("DIFFERS"));
}

#[test]
fn bench_cpu_json_has_the_documented_fields() {
    let o = qf(&[
        "bench",
        "--device",
        "cpu",
        "--format",
        "q4_k",
        "--elements",
        "65536",
        "--iters",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(
        rows.len(),
        2,
        "the fast path and the single-threaded reference"
    );
    for row in rows {
        for key in [
            "format",
            "device",
            "dtype",
            "elements",
            "seconds_median",
            "gelem_per_s",
            "gbytes_per_s",
            "copy_gbytes_per_s",
        ] {
            assert!(!row[key].is_null(), "missing {key}");
        }
        assert_eq!(row["format"], "Q4_K");
        assert_eq!(row["elements"], 65536);
        assert!(row["gelem_per_s"].as_f64().unwrap() > 0.0);
    }
    assert!(rows[0]["device"].as_str().unwrap().contains("fast"));
    assert!(rows[1]["device"].as_str().unwrap().contains("reference"));
}

#[test]
fn bench_resident_without_a_gpu_is_a_clear_error() {
    // The bench's default device is the CPU, which has no resident mode.
    let o = qf(&["bench", "--resident", "--format", "q4_k"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("--resident") && err.contains("--device cuda"),
        "{err}"
    );
    assert!(out.is_empty() && !err.contains("panicked"), "{out}{err}");

    // Arguments are checked before any device is opened.
    let o = qf(&[
        "bench",
        "--resident",
        "--device",
        "cuda:0",
        "--launches",
        "10",
    ]);
    assert!(text(&o).1.contains("at least 100"), "{}", text(&o).1);
    let o = qf(&[
        "bench",
        "--resident",
        "--device",
        "cuda",
        "--resident-mb",
        "0",
    ]);
    assert!(text(&o).1.contains("--resident-mb"), "{}", text(&o).1);
    let o = qf(&["bench", "--resident", "--device", "cuda", "--queues", "0"]);
    assert!(text(&o).1.contains("--queues"), "{}", text(&o).1);
    // The resident options need --resident; --elements sizes the ordinary bench only.
    for args in [
        &["bench", "--resident-mb", "10"][..],
        &["bench", "--launches", "300"],
        &["bench", "--queues", "4"],
        &["bench", "--resident", "--elements", "4096"],
    ] {
        let o = qf(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o).1);
    }
}

#[test]
fn bad_input_gets_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let o = qf(&["inspect", bad.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.gguf") && !err.contains("panicked"),
        "{err}"
    );
    let o = qf(&["load", "--device", "tpu"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("tpu"));
}

/// Raw little-endian GGUF bytes, for files the writer refuses to write.
struct Raw(Vec<u8>);

impl Raw {
    /// Magic, version 3, tensor and metadata counts.
    fn new(n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(3).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Raw {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    fn kv_str(&mut self, key: &[u8], v: &[u8]) -> &mut Raw {
        self.str(key).u32(8).str(v)
    }
    /// A 1-D F32 tensor of `n` elements at `offset`.
    fn f32_tensor(&mut self, name: &[u8], n: u64, offset: u64) -> &mut Raw {
        self.str(name).u32(1).u64(n).u32(0).u64(offset)
    }
    /// Pads to 32 and appends `data` zero bytes; writes the file.
    fn write(&mut self, path: &std::path::Path, data: usize) {
        while self.0.len() % 32 != 0 {
            self.0.push(0);
        }
        self.0.resize(self.0.len() + data, 0);
        std::fs::write(path, &self.0).unwrap();
    }
}

/// Characters a terminal acts on (ESC, BEL, CR, C1 controls, bidi overrides), other than the
/// newlines that end lines.
fn terminal_controls(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| c != '\n' && quantforge::gguf::is_unsafe_char(c))
        .collect()
}

/// Issue 12, fault 4: a name holding `ESC [2J` cleared the screen from inspect's table (and
/// could leave a fake "all good"); an OSC sequence in a key set the terminal's title. Every
/// command's human-readable output and errors show such strings escaped; `--json` keeps them
/// exact.
#[test]
fn strings_from_a_file_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "\x1b[2J\x1b]0;pwned\x07\r\u{9b}31m\u{202e}ok";

    // In a value: shown escaped; exact in JSON.
    let value = dir.path().join("value.gguf");
    Raw::new(1, 1)
        .kv_str(b"general.name", hostile.as_bytes())
        .f32_tensor(b"w", 8, 0)
        .write(&value, 32);
    for args in [vec!["inspect"], vec!["inspect", "--full"]] {
        let o = qf(&[args.as_slice(), &[value.to_str().unwrap()]].concat());
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(out.contains("\\u{1b}[2J"), "{out}");
        assert_eq!(terminal_controls(&out), [], "{args:?}: {out:?}");
    }
    let o = qf(&["inspect", "--json", value.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metadata"]["general.name"], hostile);

    // In a tensor name and in a key: every command refuses the file, and says so escaped.
    let name = dir.path().join("name.gguf");
    Raw::new(1, 0)
        .f32_tensor(b"w\x1b[2J", 8, 0)
        .write(&name, 32);
    let key = dir.path().join("key.gguf");
    Raw::new(0, 1)
        .kv_str(b"a\x1b]0;pwned\x07", b"x")
        .write(&key, 0);
    let out = dir.path().join("out.gguf");
    for (file, shown) in [(&name, "w\\x1b[2J"), (&key, "a\\x1b]0;pwned\\x07")] {
        let f = file.to_str().unwrap();
        for args in [
            vec!["inspect", f],
            vec!["inspect", "--json", f],
            vec!["dequant", f, "-o", out.to_str().unwrap()],
            vec!["verify", f],
            vec!["load", f, "--device", "cpu", "--no-progress"],
        ] {
            let o = qf(&args);
            let (stdout, err) = text(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {stdout} {err}");
            assert!(err.contains(shown), "{args:?}: {err}");
            assert_eq!(terminal_controls(&stdout), [], "{args:?}: {stdout:?}");
            assert_eq!(terminal_controls(&err), [], "{args:?}: {err:?}");
        }
    }
}

/// Issue 12, fault 5: a 64-byte file with `general.alignment` = 2^31 and no tensors made
/// `dequant` write a 2 GiB file. Such an alignment is refused now, and an output is never
/// padded beyond what its tensors need: without tensors, it is a few bytes whatever the
/// alignment.
#[test]
fn dequant_never_amplifies_a_small_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    for (align, ok) in [(1u32 << 31, false), (1 << 16, true), (4096, true)] {
        let src = dir.path().join(format!("align-{align}.gguf"));
        let mut r = Raw::new(0, 1);
        r.str(b"general.alignment").u32(4).u32(align);
        r.write(&src, 0);
        assert!(std::fs::metadata(&src).unwrap().len() <= 64);
        let _ = std::fs::remove_file(&out);
        let o = qf(&[
            "dequant",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        let (_, err) = text(&o);
        assert_eq!(o.status.success(), ok, "alignment {align}: {err}");
        if ok {
            let len = std::fs::metadata(&out).unwrap().len();
            assert!(len < 256, "alignment {align}: wrote {len} bytes");
            assert_eq!(GgufFile::open(&out).unwrap().alignment(), u64::from(align));
        } else {
            assert!(
                err.contains("general.alignment") && err.contains("65536"),
                "{err}"
            );
            assert!(!out.exists());
        }
    }
}

/// Issue 12, fault 6: `inspect` mapped the whole file to read its header, so a valid 4 GiB file
/// failed under a 4 GiB address-space limit (`mmap: Cannot allocate memory`). It reads the
/// header through the unmapped path now: here a sparse 4 GiB file under a 1 GiB limit.
#[cfg(unix)]
#[test]
fn inspect_reads_the_header_whatever_the_file_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.gguf");
    let n: u64 = 1 << 30; // F32 elements: 4 GiB of data
    let mut r = Raw::new(1, 0);
    r.f32_tensor(b"huge.weight", n, 0);
    r.write(&big, 0);
    let header = std::fs::metadata(&big).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(header + 4 * n)
        .unwrap();
    let script = format!(
        "ulimit -v 1048576 && exec '{}' inspect '{}'",
        env!("CARGO_BIN_EXE_quantforge"),
        big.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("huge.weight") && out.contains("4.29 GB"),
        "{out}"
    );
}

/// `--no-mmap` works on every command that reads a file.
#[test]
fn no_mmap_works_on_every_command() {
    let f = data("tiny-llama-q4_k_m.gguf");
    let f = f.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    for args in [
        vec!["inspect", "--no-mmap", f],
        vec!["dequant", "--no-mmap", f, "-o", out.to_str().unwrap()],
        vec!["verify", "--no-mmap", "--device", "cpu", f],
        vec!["load", "--no-mmap", "--device", "cpu", "--no-progress", f],
    ] {
        let o = qf(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o).1);
    }
}

/// Issue 12, fault 7: the CLI's messages. An operating-system error is said once (it was
/// `… (os error 2): … (os error 2)`); a directory is "a directory"; the unsupported-type
/// error gives the type first and the hint after; the skip warning is printed once, without
/// colour codes when stderr is not a terminal.
#[test]
fn messages_are_said_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = file_with_an_unsupported_type(dir.path());
    let missing = dir.path().join("no-such-dir").join("out.gguf");
    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "--skip-unsupported",
        "-o",
        missing.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(err.matches("os error").count(), 1, "{err}");

    let o = qf(&["inspect", dir.path().to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(err.contains("is a directory"), "{err}");
    assert!(!err.contains("No such device"), "{err}");

    let out = dir.path().join("out.gguf");
    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    let (ty, hint) = (
        err.find("Q8_K").unwrap(),
        err.find("--skip-unsupported").unwrap(),
    );
    assert!(ty < hint, "the hint comes first: {err}");

    let o = qf(&[
        "dequant",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--skip-unsupported",
    ]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("left out").count(), 1, "{err}");
    assert!(!err.contains('\x1b'), "colour codes on a pipe: {err:?}");
}
