//! Interoperability with gguf-py (the PyPI package `gguf`, llama.cpp's own Python reader and
//! writer), both ways:
//!
//! * (a) our writer writes a file, and `gguf.GGUFReader` reads it and checks every key, value,
//!   type, shape and tensor byte;
//! * (b) `gguf.GGUFWriter` writes a file, and we read it and check the same.
//!
//! gguf-py must be importable by `python3` (or `$QUANTFORGE_PYTHON`): `pip install gguf`. If it
//! is not, the tests fail, unless `QUANTFORGE_SKIP_PY=1` is set, in which case they print a
//! SKIPPED line (straight to stderr, so that the test harness does not hide it) and pass.
//!
//! Shapes: GGUF stores dims innermost first (ggml order). gguf-py's `ReaderTensor.shape` keeps
//! that order, but the numpy array it hands out (`.data`) has the dims reversed (outermost
//! first, numpy's C order), and its writer takes numpy shapes and reverses them when writing.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use quant_core::GgmlType;
use quant_gguf::{GgufFile, GgufWriter, MetaArray, MetaType, MetaValue};

fn python() -> String {
    std::env::var("QUANTFORGE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether gguf-py can be used. Panics (fails the test) when it cannot, unless skipping is asked.
fn gguf_py_available(test: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", "import gguf"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var("QUANTFORGE_SKIP_PY").as_deref() == Ok("1") {
        // Written to the real stderr, not through the harness's capture, so it is always seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: python module `gguf` not importable and QUANTFORGE_SKIP_PY=1"
        );
        return false;
    }
    panic!(
        "{test}: `{} -c \"import gguf\"` failed: run `pip install gguf` \
         (or set QUANTFORGE_SKIP_PY=1 to skip the gguf-py interop tests)",
        python()
    );
}

fn run_python(script: &str, arg: &Path) {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python script failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("GGUF-PY-OK"),
        "python script did not finish: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Deterministic test bytes; the Python scripts compute the same: `(i * 7 + seed) % 256`.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + seed) % 256) as u8).collect()
}

fn arr(t: MetaType, v: Vec<MetaValue>) -> MetaValue {
    MetaValue::Array(MetaArray::new(t, v))
}

/// Reads the file written by our writer and checks it with gguf-py.
const CHECK_OURS: &str = r#"
import sys
import numpy as np
import gguf
from gguf import GGUFReader, GGUFValueType as VT, GGMLQuantizationType as QT

r = GGUFReader(sys.argv[1])

def walk(parts, i, t):
    # Rebuilds a value from gguf-py's flat parts: (elem_type, [values]) for arrays.
    t = VT(t)
    if t == VT.STRING:
        return str(parts[i + 1].tobytes(), "utf-8"), i + 2
    if t == VT.ARRAY:
        it = int(parts[i][0]); n = int(parts[i + 1][0]); i += 2
        vals = []
        for _ in range(n):
            v, i = walk(parts, i, it)
            vals.append(v)
        return (VT(it), vals), i
    return parts[i].tolist()[0], i + 1

def value(name):
    f = r.fields[name]
    v, end = walk(f.parts, 3, f.types[0])
    assert end == len(f.parts), name
    return f.types[0], v

expected = {
    "general.architecture": (VT.STRING, "llama"),
    "general.name": (VT.STRING, "tïny ✓"),
    "test.u8": (VT.UINT8, 200),
    "test.i8": (VT.INT8, -5),
    "test.u16": (VT.UINT16, 60000),
    "test.i16": (VT.INT16, -30000),
    "test.u32": (VT.UINT32, 4000000000),
    "test.i32": (VT.INT32, -2000000000),
    "test.f32": (VT.FLOAT32, 1.5),
    "test.bool": (VT.BOOL, True),
    "test.u64": (VT.UINT64, (1 << 40) + 3),
    "test.i64": (VT.INT64, -(1 << 40)),
    "test.f64": (VT.FLOAT64, -0.25),
    "test.arr_i32": (VT.ARRAY, (VT.INT32, [1, -2, 3])),
    "test.arr_str": (VT.ARRAY, (VT.STRING, ["a", "bc", ""])),
    "test.arr_empty": (VT.ARRAY, (VT.FLOAT32, [])),
    "test.nested": (VT.ARRAY, (VT.ARRAY, [
        (VT.UINT16, [1, 2]),
        (VT.STRING, ["x"]),
        (VT.ARRAY, [(VT.BOOL, [True, False])]),
    ])),
}
keys = [k for k in r.fields if not k.startswith("GGUF.")]
assert keys == list(expected), keys
for k, want in expected.items():
    got = value(k)
    assert got == want, (k, got, want)
assert r.fields["GGUF.version"].contents() == 3

def pattern(n, seed):
    return bytes((i * 7 + seed) % 256 for i in range(n))

# name: (type, ggml dims, seed)
tensors = {
    "f32": (QT.F32, [8, 3], 1),
    "f16": (QT.F16, [16], 2),
    "blk.0.q4_k": (QT.Q4_K, [512, 2], 3),
    "blk.0.q6_k": (QT.Q6_K, [256], 4),
    "q4_0": (QT.Q4_0, [64, 2, 1, 3], 5),
}
assert [t.name for t in r.tensors] == list(tensors), [t.name for t in r.tensors]
for t in r.tensors:
    ty, dims, seed = tensors[t.name]
    assert t.tensor_type == ty, (t.name, t.tensor_type)
    # ReaderTensor.shape is in ggml order; the numpy data has it reversed.
    assert [int(d) for d in t.shape] == dims, (t.name, t.shape)
    assert t.n_elements == int(np.prod(dims)), t.name
    block, size = gguf.GGML_QUANT_SIZES[ty]
    assert t.n_bytes == t.n_elements // block * size, t.name
    assert t.data.tobytes() == pattern(t.n_bytes, seed), t.name
    if ty == QT.F32:
        assert t.data.shape == (3, 8), t.data.shape
    if ty in (QT.Q4_K, QT.Q6_K, QT.Q4_0):
        # Quantized data comes as uint8 rows of bytes, outermost dims first.
        assert t.data.shape[-1] == dims[0] // block * size, t.data.shape
    assert t.data_offset % 32 == 0
print("GGUF-PY-OK")
"#;

#[test]
fn gguf_py_reads_what_we_write() {
    if !gguf_py_available("gguf_py_reads_what_we_write") {
        return;
    }
    let mut w = GgufWriter::new();
    let kvs: Vec<(&str, MetaValue)> = vec![
        ("general.architecture", MetaValue::String("llama".into())),
        ("general.name", MetaValue::String("tïny ✓".into())),
        ("test.u8", MetaValue::U8(200)),
        ("test.i8", MetaValue::I8(-5)),
        ("test.u16", MetaValue::U16(60000)),
        ("test.i16", MetaValue::I16(-30000)),
        ("test.u32", MetaValue::U32(4_000_000_000)),
        ("test.i32", MetaValue::I32(-2_000_000_000)),
        ("test.f32", MetaValue::F32(1.5)),
        ("test.bool", MetaValue::Bool(true)),
        ("test.u64", MetaValue::U64((1 << 40) + 3)),
        ("test.i64", MetaValue::I64(-(1 << 40))),
        ("test.f64", MetaValue::F64(-0.25)),
        (
            "test.arr_i32",
            arr(
                MetaType::I32,
                vec![MetaValue::I32(1), MetaValue::I32(-2), MetaValue::I32(3)],
            ),
        ),
        (
            "test.arr_str",
            arr(
                MetaType::String,
                ["a", "bc", ""]
                    .iter()
                    .map(|s| MetaValue::String(s.to_string()))
                    .collect(),
            ),
        ),
        ("test.arr_empty", arr(MetaType::F32, vec![])),
        (
            "test.nested",
            arr(
                MetaType::Array,
                vec![
                    arr(MetaType::U16, vec![MetaValue::U16(1), MetaValue::U16(2)]),
                    arr(MetaType::String, vec![MetaValue::String("x".into())]),
                    arr(
                        MetaType::Array,
                        vec![arr(
                            MetaType::Bool,
                            vec![MetaValue::Bool(true), MetaValue::Bool(false)],
                        )],
                    ),
                ],
            ),
        ),
    ];
    for (k, v) in kvs {
        w.add_metadata(k, v).unwrap();
    }
    let tensors: [(&str, GgmlType, &[u64], usize); 5] = [
        ("f32", GgmlType::F32, &[8, 3], 1),
        ("f16", GgmlType::F16, &[16], 2),
        ("blk.0.q4_k", GgmlType::Q4_K, &[512, 2], 3),
        ("blk.0.q6_k", GgmlType::Q6_K, &[256], 4),
        ("q4_0", GgmlType::Q4_0, &[64, 2, 1, 3], 5),
    ];
    for (name, ty, dims, seed) in tensors {
        let g = ty.geometry().unwrap();
        let n = dims.iter().product::<u64>() as usize / g.block_elems * g.block_bytes;
        w.add_tensor(name, dims, ty, Cow::Owned(pattern(n, seed)))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.gguf");
    w.write_file(&path).unwrap();
    // Sanity: we read it ourselves too.
    GgufFile::open(&path).unwrap();
    run_python(CHECK_OURS, &path);
}

/// Writes a file with gguf-py's writer.
const WRITE_THEIRS: &str = r#"
import sys
import numpy as np
import gguf
from gguf import GGUFWriter, GGUFValueType as VT, GGMLQuantizationType as QT

def pattern(n, seed):
    return np.frombuffer(bytes((i * 7 + seed) % 256 for i in range(n)), dtype=np.uint8)

w = GGUFWriter(sys.argv[1], "llama")
w.add_custom_alignment(64)
w.add_key_value("test.u8", 255, VT.UINT8)
w.add_key_value("test.i8", -128, VT.INT8)
w.add_key_value("test.u16", 65535, VT.UINT16)
w.add_key_value("test.i16", -2, VT.INT16)
w.add_key_value("test.u32", 7, VT.UINT32)
w.add_key_value("test.i32", -7, VT.INT32)
w.add_key_value("test.f32", 0.1, VT.FLOAT32)
w.add_key_value("test.bool", False, VT.BOOL)
w.add_key_value("test.str", "héllo", VT.STRING)
w.add_key_value("test.u64", 2**64 - 1, VT.UINT64)
w.add_key_value("test.i64", -(2**63), VT.INT64)
w.add_key_value("test.f64", 1e300, VT.FLOAT64)
w.add_array("test.arr", [1, 2, 3])
w.add_array("test.arr_f", [0.5, -0.5])
w.add_array("test.arr_str", ["a", "b"])
w.add_array("test.nested", [[1, 2], ["z"], [[True]]])

w.add_tensor("f32", np.arange(24, dtype=np.float32).reshape(3, 8))
w.add_tensor("f16", np.arange(32, dtype=np.uint16).view(np.float16).reshape(2, 16))
# Quantized tensors go in as uint8 rows of bytes; gguf-py turns the byte shape into elements.
w.add_tensor("q4_k", pattern(2 * 2 * 144, 3).reshape(2, 2 * 144), raw_dtype=QT.Q4_K)
w.add_tensor("q6_k", pattern(210, 4).reshape(1, 210), raw_dtype=QT.Q6_K)
w.add_tensor("q8_0", pattern(3 * 34, 5).reshape(3, 1, 34), raw_dtype=QT.Q8_0)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("GGUF-PY-OK")
"#;

#[test]
fn we_read_what_gguf_py_writes() {
    if !gguf_py_available("we_read_what_gguf_py_writes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.gguf");
    run_python(WRITE_THEIRS, &path);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);

    let s = |x: &str| MetaValue::String(x.into());
    let expected: Vec<(&str, MetaValue)> = vec![
        ("general.architecture", s("llama")),
        ("general.alignment", MetaValue::U32(64)),
        ("test.u8", MetaValue::U8(255)),
        ("test.i8", MetaValue::I8(-128)),
        ("test.u16", MetaValue::U16(65535)),
        ("test.i16", MetaValue::I16(-2)),
        ("test.u32", MetaValue::U32(7)),
        ("test.i32", MetaValue::I32(-7)),
        ("test.f32", MetaValue::F32(0.1)),
        ("test.bool", MetaValue::Bool(false)),
        ("test.str", s("héllo")),
        ("test.u64", MetaValue::U64(u64::MAX)),
        ("test.i64", MetaValue::I64(i64::MIN)),
        ("test.f64", MetaValue::F64(1e300)),
        (
            "test.arr",
            arr(
                MetaType::I32,
                vec![MetaValue::I32(1), MetaValue::I32(2), MetaValue::I32(3)],
            ),
        ),
        (
            "test.arr_f",
            arr(
                MetaType::F32,
                vec![MetaValue::F32(0.5), MetaValue::F32(-0.5)],
            ),
        ),
        ("test.arr_str", arr(MetaType::String, vec![s("a"), s("b")])),
        (
            "test.nested",
            arr(
                MetaType::Array,
                vec![
                    arr(MetaType::I32, vec![MetaValue::I32(1), MetaValue::I32(2)]),
                    arr(MetaType::String, vec![s("z")]),
                    arr(
                        MetaType::Array,
                        vec![arr(MetaType::Bool, vec![MetaValue::Bool(true)])],
                    ),
                ],
            ),
        ),
    ];
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, want_keys);
    for (k, v) in &expected {
        assert_eq!(f.get(k), Some(v), "{k}");
    }

    let names: Vec<&str> = f.tensor_names().collect();
    assert_eq!(names, ["f32", "f16", "q4_k", "q6_k", "q8_0"]);

    // gguf-py reverses numpy shapes: (3, 8) is written as ggml dims [8, 3].
    let t = f.tensor("f32").unwrap();
    assert_eq!((t.ty, t.dims.as_slice()), (GgmlType::F32, &[8u64, 3][..]));
    let vals: Vec<f32> = f
        .tensor_data(&t)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, (0..24).map(|i| i as f32).collect::<Vec<_>>());

    let t = f.tensor("f16").unwrap();
    assert_eq!((t.ty, t.dims.as_slice()), (GgmlType::F16, &[16u64, 2][..]));
    let bits: Vec<u16> = f
        .tensor_data(&t)
        .unwrap()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(bits, (0..32).collect::<Vec<u16>>());

    // Byte rows (2, 288) of Q4_K hold 2 rows of 512 elements.
    let t = f.tensor("q4_k").unwrap();
    assert_eq!(
        (t.ty, t.dims.as_slice()),
        (GgmlType::Q4_K, &[512u64, 2][..])
    );
    assert_eq!(*f.tensor_data(&t).unwrap(), pattern(2 * 2 * 144, 3));
    let t = f.tensor("q6_k").unwrap();
    assert_eq!(
        (t.ty, t.dims.as_slice()),
        (GgmlType::Q6_K, &[256u64, 1][..])
    );
    assert_eq!(*f.tensor_data(&t).unwrap(), pattern(210, 4));
    let t = f.tensor("q8_0").unwrap();
    assert_eq!(
        (t.ty, t.dims.as_slice()),
        (GgmlType::Q8_0, &[32u64, 1, 3][..])
    );
    assert_eq!(*f.tensor_data(&t).unwrap(), pattern(3 * 34, 5));
    for t in f.tensors() {
        assert_eq!(t.offset % 64, 0, "{}", t.name);
    }

    // Read without mapping: the same.
    let g = GgufFile::open_with(&path, quant_gguf::OpenOptions { mmap: false }).unwrap();
    assert_eq!(g.metadata(), f.metadata());
    assert_eq!(
        g.tensors().collect::<Vec<_>>(),
        f.tensors().collect::<Vec<_>>()
    );
    for t in f.tensors() {
        assert_eq!(g.tensor_data(&t).unwrap(), f.tensor_data(&t).unwrap());
    }
}
