//! The non-quantized types through the loader: F64 is a float format like F32 (converted on the
//! host, rounded to nearest), and the integer types (I8, I16, I32, I64) are kept as they are on
//! every path (host load, serial, pipelined, the cpu-dequant baseline), while asking for their
//! values as floats is an error naming the tensor.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use quant_core::cpu::{self, CpuPath};
use quant_core::{GgmlType, OutputDType};
use quant_gguf::GgufWriter;
use quant_gpu::TensorDType;
use quant_loader::{
    GgufLoader, LoadAs, LoadError, LoadPath, LoadReport, PipelineOptions, Strategy, Target,
};

mod common;
use common::TestBackend;

use quant_float as _;
use quant_q4_0 as _;

/// F64 values whose f32 roundings are known: ties to even, overflow, subnormals, signed zeros,
/// NaNs with payloads.
const F64_BITS: [(u64, u32); 12] = [
    (0x3FF0_0000_1000_0000, 0x3F80_0000), // 1 + 2^-24: a tie, to even 1.0
    (0x3FF0_0000_3000_0000, 0x3F80_0002), // 1 + 3*2^-24: a tie, up to even
    (0x3FD5_5555_5555_5555, 0x3EAA_AAAB), // 1/3
    (0x47EF_FFFF_F000_0000, 0x7F80_0000), // 2^128 - 2^103: overflows to +inf
    (0xFFF0_0000_0000_0000, 0xFF80_0000), // -inf
    (0x3690_0000_0000_0000, 0x0000_0000), // 2^-150: a tie, to even zero
    (0x36A8_0000_0000_0000, 0x0000_0002), // 3*2^-150: a tie, to even 2*2^-149
    (0x380F_FFFF_FFFF_FFFF, 0x0080_0000), // just below 2^-126: up to the smallest normal
    (0x8000_0000_0000_0000, 0x8000_0000), // -0.0
    (0xB690_0000_0000_0000, 0x8000_0000), // -2^-150: -0.0
    (0x7FF0_0000_2000_0001, 0x7FC0_0001), // signalling NaN: quieted, top payload bits kept
    (0xFFF8_0000_0000_0000, 0xFFC0_0000), // negative quiet NaN
];

/// Bytes of the test file's tensors, by name.
struct Tensors {
    i8: Vec<u8>,
    i16: Vec<u8>,
    i32: Vec<u8>,
    i64: Vec<u8>,
    f64: Vec<u8>,
    f32: Vec<u8>,
    q4_0: Vec<u8>,
}

/// The F64 tensor's elements: the known cases repeated past one fast-path chunk, then once more
/// as a tail.
fn f64_elements() -> Vec<u64> {
    F64_BITS.iter().map(|c| c.0).cycle().take(12 * 30).collect()
}

fn tensors() -> Tensors {
    let i32_values = [0i32, -1, i32::MAX, i32::MIN, 42, 7, -300, 1 << 20];
    Tensors {
        i8: [0i8, -1, 127, -128, 5, 6, 7]
            .iter()
            .map(|&v| v as u8)
            .collect(),
        i16: [-2i16, i16::MAX, i16::MIN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        i32: i32_values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        i64: [i64::MIN, -1, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        f64: f64_elements()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        f32: [1.5f32, -0.0, f32::NAN, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        q4_0: quant_core::random_bytes(18 * 4, 3),
    }
}

/// Writes the test file: every non-quantized type, an F32 and a Q4_0 tensor between them.
fn write_file(tag: &str) -> (PathBuf, Tensors) {
    let t = tensors();
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        quant_gguf::MetaValue::String("test".into()),
    )
    .unwrap();
    let add = |w: &mut GgufWriter<'_>, name: &str, dims: &[u64], ty: GgmlType, b: &[u8]| {
        w.add_tensor(name, dims, ty, Cow::Owned(b.to_vec()))
            .unwrap()
    };
    add(&mut w, "tok.ids", &[8], GgmlType::I32, &t.i32);
    add(&mut w, "scale.f64", &[12, 30], GgmlType::F64, &t.f64);
    add(&mut w, "mask.i8", &[7], GgmlType::I8, &t.i8);
    add(&mut w, "w.f32", &[4], GgmlType::F32, &t.f32);
    add(&mut w, "pos.i16", &[3], GgmlType::I16, &t.i16);
    add(&mut w, "q.weight", &[128], GgmlType::Q4_0, &t.q4_0);
    add(&mut w, "big.i64", &[3], GgmlType::I64, &t.i64);
    let path = std::env::temp_dir().join(format!(
        "qf-non-quantized-{tag}-{}.gguf",
        std::process::id()
    ));
    w.write_file(&path).unwrap();
    (path, t)
}

/// The raw bytes of the integer tensors, by name.
fn integer_bytes(t: &Tensors) -> [(&'static str, GgmlType, &[u8]); 4] {
    [
        ("tok.ids", GgmlType::I32, &t.i32),
        ("mask.i8", GgmlType::I8, &t.i8),
        ("pos.i16", GgmlType::I16, &t.i16),
        ("big.i64", GgmlType::I64, &t.i64),
    ]
}

/// The rounded F64 tensor, as f32 bits: Rust's `as` (round to nearest-even) for every value,
/// the documented bits for NaNs; and the hand-worked expectations agree with it.
fn f64_expected() -> Vec<u32> {
    let want: Vec<u32> = F64_BITS.iter().map(|c| c.1).cycle().take(12 * 30).collect();
    for (bits, w) in f64_elements().into_iter().zip(&want) {
        let x = f64::from_bits(bits);
        if !x.is_nan() {
            assert_eq!((x as f32).to_bits(), *w, "{bits:#018x}");
        }
    }
    want
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// What every report of the test file must say about its tensors, whatever the path.
fn check_rows(report: &LoadReport, loader: &GgufLoader, dtype: OutputDType, values: LoadPath) {
    assert_eq!(report.tensors.len(), 7);
    assert_eq!(report.kept(), 4);
    for (row, t) in report.tensors.iter().zip(loader.file().tensors()) {
        if matches!(
            t.ty,
            GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64
        ) {
            assert_eq!(row.path, LoadPath::Kept, "{}", t.name);
            assert_eq!(row.dtype, TensorDType::Native(t.ty), "{}", t.name);
        } else {
            assert_eq!(row.dtype, TensorDType::Values(dtype), "{}", t.name);
            if t.ty == GgmlType::Q4_0 {
                continue;
            }
            assert_eq!(row.path, values, "{}", t.name);
        }
    }
}

#[test]
fn asking_for_floats_of_an_integer_tensor_is_an_error_naming_it() {
    let (path, t) = write_file("error");
    let loader = GgufLoader::open(&path).unwrap();
    for (name, ty, bytes) in integer_bytes(&t) {
        let err = loader
            .dequantize_to_host(name, CpuPath::Fast)
            .expect_err(name);
        match &err {
            LoadError::IntegerTensor {
                file,
                tensor,
                ty: got,
            } => {
                assert_eq!(file, &path);
                assert_eq!(tensor, name);
                assert_eq!(*got, ty);
            }
            other => panic!("{name}: {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("tensor '{name}' has type {ty}"))
                && msg.contains("integer tensors hold indices/ids, not weights")
                && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        let info = loader.tensor(name).unwrap();
        assert!(matches!(
            loader.format_of(&info),
            Err(LoadError::IntegerTensor { .. })
        ));
        // Their bytes, as stored, are there for whoever wants them.
        assert_eq!(&*loader.tensor_raw(name).unwrap(), bytes);
    }
    std::fs::remove_file(path).ok();
}

#[test]
fn f64_rounds_to_nearest_even_on_the_host() {
    let (path, _) = write_file("f64");
    let loader = GgufLoader::open(&path).unwrap();
    let want = f64_expected();
    for p in [CpuPath::Reference, CpuPath::Fast] {
        let v = loader.dequantize_to_host("scale.f64", p).unwrap();
        let got: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "{p:?}");
    }
    std::fs::remove_file(path).ok();
}

#[test]
fn a_host_load_keeps_integers_as_they_are() {
    let (path, t) = write_file("host");
    let loader = GgufLoader::open(&path).unwrap();
    for dtype in OutputDType::ALL {
        let loaded = loader.load_all_to_host(dtype.into(), &mut |_| {}).unwrap();
        let (outputs, report) = (&loaded.tensors, &loaded.report);
        check_rows(report, &loader, dtype, LoadPath::Cpu);
        let by_name = |n: &str| {
            let i = loader.file().tensors().position(|t| t.name == n).unwrap();
            (outputs[i].to_le_bytes(), &report.tensors[i])
        };
        for (name, _, bytes) in integer_bytes(&t) {
            let (out, row) = by_name(name);
            assert_eq!(out, bytes, "{name} {dtype}");
            assert_eq!(row.bytes_produced, bytes.len() as u64);
        }
        let (out, _) = by_name("scale.f64");
        let want: Vec<f32> = f64_expected().into_iter().map(f32::from_bits).collect();
        assert_eq!(out, cpu::encode_as(&want, dtype), "{dtype}");
        let (out, _) = by_name("w.f32");
        let f32s: Vec<f32> = u32s(&t.f32).into_iter().map(f32::from_bits).collect();
        assert_eq!(out, cpu::encode_as(&f32s, dtype));
    }
    std::fs::remove_file(path).ok();
}

fn ring(strategy: Strategy) -> PipelineOptions {
    PipelineOptions {
        strategy,
        ring_slots: 2,
        slot_bytes: 1024,
        readers: 2,
        direct_reads: false,
    }
}

#[test]
fn a_device_load_keeps_integers_as_they_are_on_every_strategy() {
    let (path, t) = write_file("device");
    for (strategy, values) in [
        (Strategy::Pipelined, LoadPath::HostConvert),
        (Strategy::Serial, LoadPath::HostConvert),
        (Strategy::CpuDequant, LoadPath::CpuDequant),
    ] {
        for dtype in OutputDType::ALL {
            let loader = GgufLoader::open(&path).unwrap();
            let b = TestBackend::new(0);
            let loaded = loader
                .load_with(&b, dtype.into(), &ring(strategy), &mut |_| {})
                .unwrap();
            let report = &loaded.report;
            assert_eq!(b.violations(), Vec::<String>::new());
            check_rows(report, &loader, dtype, values.clone());
            for (name, ty, bytes) in integer_bytes(&t) {
                let row = report.tensors.iter().find(|r| r.name == name).unwrap();
                assert_eq!(row.bytes_uploaded, bytes.len() as u64, "{name}");
                assert_eq!(row.bytes_produced, 0, "{name}");
                let dt = loaded.get(name).unwrap();
                assert_eq!(dt.dtype, TensorDType::Native(ty));
                assert_eq!(dt.bytes(), bytes.len() as u64);
                assert_eq!(
                    dt.download(&b).unwrap(),
                    bytes,
                    "{name} {strategy:?} {dtype}"
                );
            }
            let dt = loaded.get("scale.f64").unwrap();
            let want: Vec<f32> = f64_expected().into_iter().map(f32::from_bits).collect();
            assert_eq!(dt.download(&b).unwrap(), cpu::encode_as(&want, dtype));
            // The quantized tensor beside them still went through its kernel.
            let q = loaded.get("q.weight").unwrap();
            let v = loader
                .dequantize_to_host("q.weight", CpuPath::Reference)
                .unwrap();
            assert_eq!(q.download(&b).unwrap(), cpu::encode_as(&v, dtype));
            if strategy != Strategy::CpuDequant {
                assert!(b.launches.load(Ordering::SeqCst) > 0);
            }
        }
    }
    std::fs::remove_file(path).ok();
}

#[test]
fn one_integer_tensor_onto_a_device_and_natively() {
    let (path, t) = write_file("one");
    let loader = GgufLoader::open(&path).unwrap();
    let b = TestBackend::new(0);
    let (dt, load) = loader.load_tensor("tok.ids", &b, OutputDType::F16).unwrap();
    assert_eq!(load.path, LoadPath::Kept);
    assert_eq!(load.path.label(), "kept");
    assert_eq!(dt.dtype, TensorDType::Native(GgmlType::I32));
    assert_eq!(dt.download(&b).unwrap(), t.i32);
    // Asked for natively, an integer tensor is simply native.
    let (dt, load) = loader.load_tensor("mask.i8", &b, LoadAs::Native).unwrap();
    assert_eq!(load.path, LoadPath::Native);
    assert_eq!(dt.download(&b).unwrap(), t.i8);

    // Sizes on the device, for placements: an integer tensor is kept whatever is asked.
    for dtype in OutputDType::ALL {
        let p = loader
            .plan("big.i64", dtype.into(), None, Target::Device)
            .unwrap();
        assert_eq!(
            (p.out_bytes, p.dtype),
            (24, TensorDType::Native(GgmlType::I64))
        );
    }
    let as_ = LoadAs::Values(OutputDType::F16);
    let f = loader.plan("scale.f64", as_, None, Target::Device).unwrap();
    assert_eq!(f.out_bytes, 360 * 2);
    std::fs::remove_file(path).ok();
}
