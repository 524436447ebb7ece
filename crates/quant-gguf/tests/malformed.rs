//! Malformed files: each is built by hand (or by the writer and then patched), and must give its
//! own error variant, with a message that names the file and the field or tensor.
//!
//! Every case is opened three ways, which must agree: from memory, and from a file both mapped
//! and unmapped (the unmapped open parses the header from a prefix of the file; see
//! [`open_all_ways`]).

use quant_core::GgmlType;
use quant_gguf::{GgufError, GgufFile, MetaType, MetaValue, OpenOptions, MAX_ARRAY_DEPTH};

const NAME: &str = "bad-file.gguf";

mod common;
use common::B;

/// Opening what was built, the three ways of [`open_all_ways`].
impl B {
    fn open(&self) -> Result<GgufFile, GgufError> {
        open_all_ways(self.0.clone())
    }
    fn err(&self) -> GgufError {
        match self.open() {
            Ok(f) => panic!("expected an error, file opened: {f:?}"),
            Err(e) => e,
        }
    }
}

/// Opens `bytes` from memory and returns the result, after checking that the same bytes in a
/// file, opened mapped and unmapped, give the same header and tensor bytes, or the same error
/// (same variant, same message but for the path).
fn open_all_ways(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NAME);
    std::fs::write(&path, &bytes).unwrap();
    let mem = GgufFile::from_bytes(bytes, NAME);
    for mmap in [true, false] {
        let file = GgufFile::open_with(&path, OpenOptions { mmap });
        match (&mem, &file) {
            (Ok(m), Ok(f)) => {
                assert_eq!(f.is_mapped(), mmap);
                assert_eq!(m.metadata(), f.metadata());
                assert_eq!(
                    m.tensors().collect::<Vec<_>>(),
                    f.tensors().collect::<Vec<_>>()
                );
                assert_eq!(m.data_offset(), f.data_offset());
                for t in m.tensors() {
                    assert_eq!(m.tensor_data(&t).unwrap(), f.tensor_data(&t).unwrap());
                }
            }
            (Err(m), Err(f)) => {
                assert_eq!(
                    std::mem::discriminant(m),
                    std::mem::discriminant(f),
                    "mmap {mmap}: {m} / {f}"
                );
                let shown = f.to_string().replace(&path.display().to_string(), NAME);
                assert_eq!(m.to_string(), shown, "mmap {mmap}");
            }
            (m, f) => panic!("mmap {mmap}: from memory {m:?}, from the file {f:?}"),
        }
    }
    mem
}

/// A valid file: one kv, one F32 tensor of 8 elements.
fn valid() -> B {
    let mut b = B::header(3, 1, 1);
    b.kv_str("general.name", b"ok")
        .tensor("t", &[8], 0, 0)
        .pad(32)
        .zeros(32);
    b
}

/// Asserts that the message names the file and each of `parts`.
fn names(e: &GgufError, parts: &[&str]) {
    let msg = e.to_string();
    assert!(msg.contains(NAME), "message does not name the file: {msg}");
    for p in parts {
        assert!(msg.contains(p), "message does not name {p:?}: {msg}");
    }
    assert_eq!(e.path().map(|p| p.to_str().unwrap()), Some(NAME));
}

/// A file with one tensor and no metadata, for tensor-info cases.
fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> B {
    let mut b = B::header(3, 1, 0);
    b.tensor("blk.0.w", dims, ty, offset).pad(32).zeros(data);
    b
}

#[test]
fn the_valid_base_opens() {
    let f = valid().open().unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.tensor("t").unwrap().n_bytes, 32);
    assert_eq!(f.data_offset() % 32, 0);
}

#[test]
fn bad_magic() {
    let mut b = valid();
    b.0[..4].copy_from_slice(b"GGML");
    let e = b.err();
    assert!(
        matches!(e, GgufError::BadMagic { ref found, .. } if found == b"GGML"),
        "{e}"
    );
    names(&e, &["magic"]);
    // Too short to hold a magic, and not starting like one.
    let e = open_all_ways(b"PK".to_vec()).unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
}

#[test]
fn version_1_is_refused_clearly() {
    let mut b = valid();
    b.0[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = b.err();
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 1, .. }),
        "{e}"
    );
    names(&e, &["version", "GGUF v1 is not supported"]);
}

#[test]
fn unknown_versions_are_refused() {
    for v in [0u32, 4, 1000, u32::MAX] {
        let mut b = valid();
        b.0[4..8].copy_from_slice(&v.to_le_bytes());
        let e = b.err();
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version, .. } if version == v),
            "{e}"
        );
        names(&e, &["version"]);
    }
}

#[test]
fn version_2_is_read() {
    // v2 and v3 share the layout (v3 only allows big-endian files, which we refuse).
    let mut b = valid();
    b.0[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = b.open().unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.get("general.name").unwrap().as_str(), Some("ok"));
}

#[test]
fn big_endian_file_gets_its_own_error() {
    for v in [2u32, 3] {
        let mut b = valid();
        b.0[4..8].copy_from_slice(&v.to_be_bytes());
        let e = b.err();
        assert!(
            matches!(e, GgufError::BigEndian { swapped, .. } if swapped == v),
            "{e}"
        );
        names(&e, &["version", "big-endian"]);
    }
}

#[test]
fn counts_that_cannot_fit() {
    let mut b = valid();
    b.0[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                count: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["kv_count"]);

    let mut b = valid();
    b.0[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = b.err();
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    names(&e, &["tensor_count"]);
}

#[test]
fn huge_array_fails_fast() {
    // An array of 2^60 u8 must fail without trying to allocate.
    let mut b = B::header(3, 0, 1);
    b.str(b"tokenizer.ggml.scores")
        .u32(MetaType::Array.id())
        .u32(MetaType::U8.id())
        .u64(1 << 60)
        .zeros(64);
    let e = b.err();
    assert!(
        matches!(e, GgufError::CountTooLarge { count, .. } if count == 1 << 60),
        "{e}"
    );
    names(&e, &["tokenizer.ggml.scores"]);

    // Strings take at least 8 bytes each: 8 strings do not fit in 63 bytes.
    let mut b = B::header(3, 0, 1);
    b.str(b"tokens")
        .u32(MetaType::Array.id())
        .u32(MetaType::String.id())
        .u64(8)
        .zeros(63);
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                min_item_bytes: 8,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn string_lengths_that_cannot_fit() {
    let mut b = B::header(3, 0, 1);
    b.u64(u64::MAX).zeros(8);
    let e = b.err();
    assert!(
        matches!(e, GgufError::StringTooLong { len: u64::MAX, .. }),
        "{e}"
    );
    names(&e, &["metadata key #0"]);

    let mut b = B::header(3, 0, 1);
    b.str(b"general.name")
        .u32(MetaType::String.id())
        .u64(1000)
        .zeros(10);
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::StringTooLong {
                len: 1000,
                remaining: 10,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["general.name"]);

    let mut b = B::header(3, 1, 0);
    b.u64(1 << 50).zeros(40);
    let e = b.err();
    assert!(matches!(e, GgufError::StringTooLong { .. }), "{e}");
    names(&e, &["tensor #0 name"]);
}

#[test]
fn invalid_utf8() {
    let mut b = B::header(3, 0, 1);
    b.kv_str("general.name", &[0x66, 0xff, 0x66]);
    let e = b.err();
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    names(&e, &["general.name", "UTF-8"]);

    let mut b = B::header(3, 0, 1);
    b.str(&[0xc3, 0x28]).u32(MetaType::U8.id()).u8(1);
    let e = b.err();
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    names(&e, &["metadata key #0"]);

    let mut b = B::header(3, 1, 0);
    b.str(&[0x80]).u32(1).u64(8).u32(0).u64(0).pad(32).zeros(32);
    let e = b.err();
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    names(&e, &["tensor #0 name"]);
}

/// A kv whose value is `depth` nested arrays around one u8.
fn nested(depth: usize) -> B {
    let mut b = B::header(3, 0, 1);
    b.str(b"deep").u32(MetaType::Array.id());
    for _ in 1..depth {
        b.u32(MetaType::Array.id()).u64(1);
    }
    b.u32(MetaType::U8.id()).u64(1).u8(7);
    b
}

#[test]
fn nesting_depth_is_limited() {
    let f = nested(MAX_ARRAY_DEPTH).open().unwrap();
    let mut v = f.get("deep").unwrap().clone();
    let mut depth = 0;
    while let MetaValue::Array(a) = v {
        depth += 1;
        v = a.get(0).unwrap();
    }
    assert_eq!((depth, v), (MAX_ARRAY_DEPTH, MetaValue::U8(7)));

    let e = nested(MAX_ARRAY_DEPTH + 1).err();
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    names(&e, &["deep"]);
    // Far deeper than the limit: still an error, not a stack overflow.
    let e = nested(100_000).err();
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
}

#[test]
fn unknown_value_types() {
    let mut b = B::header(3, 0, 1);
    b.str(b"general.odd").u32(13).u32(0);
    let e = b.err();
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 13, .. }),
        "{e}"
    );
    names(&e, &["general.odd", "13"]);

    let mut b = B::header(3, 0, 1);
    b.str(b"general.arr")
        .u32(MetaType::Array.id())
        .u32(0xdead)
        .u64(0);
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::UnknownValueType {
                type_id: 0xdead,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["general.arr"]);
}

#[test]
fn invalid_bool() {
    let mut b = B::header(3, 0, 1);
    b.str(b"flag").u32(MetaType::Bool.id()).u8(2);
    let e = b.err();
    assert!(matches!(e, GgufError::InvalidBool { byte: 2, .. }), "{e}");
    names(&e, &["flag"]);
}

#[test]
fn duplicate_keys_and_tensors() {
    let mut b = B::header(3, 0, 2);
    b.kv_u32("llama.block_count", 1)
        .kv_u32("llama.block_count", 2);
    let e = b.err();
    assert!(matches!(e, GgufError::DuplicateKey { .. }), "{e}");
    names(&e, &["llama.block_count"]);

    let mut b = B::header(3, 2, 0);
    b.tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    let e = b.err();
    assert!(matches!(e, GgufError::DuplicateTensor { .. }), "{e}");
    names(&e, &["`w`"]);
}

/// A repeated tensor name is reported where a reader going info by info meets it: after the
/// info that repeats it is read, before that info's size is checked and before anything wrong
/// in a later info; the first repeat in file order, among several.
#[test]
fn a_repeated_tensor_name_is_reported_in_file_order() {
    let dup = |e: &GgufError| match e {
        GgufError::DuplicateTensor {
            tensor,
            tensor_index,
            ..
        } => Some((tensor.clone(), *tensor_index)),
        _ => None,
    };
    // `b` repeated at #3 and `a` at #4: #3 is met first, whatever the names' order.
    let mut b = B::header(3, 5, 0);
    for (i, name) in ["b", "a", "c", "b", "a"].iter().enumerate() {
        b.tensor(name, &[8], 0, 32 * i as u64);
    }
    b.pad(32).zeros(160);
    assert_eq!(dup(&b.err()), Some(("b".into(), 3)));
    // Before a bad dimension count, a bad type or a truncated info after it.
    for tail in [
        |b: &mut B| {
            b.tensor("d", &[8; 5], 0, 64).pad(32).zeros(96);
        },
        |b: &mut B| {
            b.tensor("d", &[8], 1000, 64).pad(32).zeros(96);
        },
        |b: &mut B| {
            b.str(&[b'd'; 40]).u32(1);
        },
    ] {
        let mut b = B::header(3, 3, 0);
        b.tensor("w", &[8], 0, 0).tensor("w", &[8], 0, 32);
        tail(&mut b);
        assert_eq!(dup(&b.err()), Some(("w".into(), 1)));
    }
    // Before the repeating info's own size is checked (a type unknown), but after it is read
    // (a dimension count out of range is met first).
    let mut b = B::header(3, 2, 0);
    b.tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 1000, 32)
        .pad(32)
        .zeros(64);
    assert_eq!(dup(&b.err()), Some(("w".into(), 1)));
    let mut b = B::header(3, 2, 0);
    b.tensor("w", &[8], 0, 0)
        .tensor("w", &[8; 5], 0, 32)
        .pad(32)
        .zeros(64);
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::BadDimCount {
                tensor_index: 1,
                ..
            }
        ),
        "{e}"
    );
    // A name is compared whole: a prefix of another is no repeat.
    let mut b = B::header(3, 3, 0);
    b.tensor("w", &[8], 0, 0)
        .tensor("w.1", &[8], 0, 32)
        .tensor("", &[8], 0, 64)
        .pad(32)
        .zeros(96);
    let f = b.open().unwrap();
    assert_eq!(f.tensor("w.1").unwrap().offset, 32);
    assert_eq!(f.tensor("").unwrap().offset, 64);
    assert!(f.tensor("w.").is_none());
}

#[test]
fn alignment_rules() {
    for bad in [0u32, 3, 48, u32::MAX] {
        let mut b = B::header(3, 0, 1);
        b.kv_u32("general.alignment", bad);
        let e = b.err();
        assert!(
            matches!(e, GgufError::BadAlignment { value, .. } if value == bad),
            "{e}"
        );
        names(&e, &["general.alignment"]);
    }
    let mut b = B::header(3, 0, 1);
    b.str(b"general.alignment").u32(MetaType::U64.id()).u64(32);
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::AlignmentNotU32 {
                found: MetaType::U64,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["general.alignment", "u64"]);

    // A valid alignment moves the data section and governs offsets.
    let mut b = B::header(3, 2, 1);
    b.kv_u32("general.alignment", 256)
        .tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 256)
        .pad(256)
        .zeros(512);
    let f = b.open().unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.data_offset(), 256);
    let mut b = B::header(3, 1, 1);
    b.kv_u32("general.alignment", 256)
        .tensor("a", &[8], 0, 32)
        .pad(256)
        .zeros(512);
    let e = b.err();
    assert!(
        matches!(e, GgufError::MisalignedOffset { alignment: 256, .. }),
        "{e}"
    );
}

#[test]
fn dimension_counts() {
    for n in [0usize, 5, 1000] {
        let mut b = B::header(3, 1, 0);
        b.str(b"w").u32(n as u32).zeros(200);
        let e = b.err();
        assert!(
            matches!(e, GgufError::BadDimCount { n_dims, .. } if n_dims as usize == n),
            "{e}"
        );
        names(&e, &["`w`", "dimensions"]);
    }
}

#[test]
fn zero_dimension_is_rejected() {
    let e = one_tensor(&[8, 0], 0, 0, 32).err();
    assert!(
        matches!(e, GgufError::ZeroDimension { index: 1, .. }),
        "{e}"
    );
    names(&e, &["blk.0.w", "dimension 1 is zero"]);
}

#[test]
fn element_and_byte_count_overflow() {
    let e = one_tensor(&[1 << 32, 1 << 32, 2], 0, 0, 32).err();
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }), "{e}");
    names(&e, &["blk.0.w", "element count"]);
    // Fits u64 but not ggml's i64.
    let e = one_tensor(&[1 << 63], 0, 0, 32).err();
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }), "{e}");

    let e = one_tensor(&[1 << 62], 0, 0, 32).err();
    assert!(matches!(e, GgufError::ByteCountOverflow { .. }), "{e}");
    names(&e, &["blk.0.w", "byte count"]);
}

#[test]
fn tensor_types() {
    let e = one_tensor(&[32], 99, 0, 32).err();
    assert!(
        matches!(e, GgufError::UnknownTensorType { type_id: 99, .. }),
        "{e}"
    );
    names(&e, &["blk.0.w", "99"]);

    let e = one_tensor(&[32], 4, 0, 32).err();
    assert!(
        matches!(
            e,
            GgufError::RemovedTensorType {
                ty: GgmlType(4),
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["blk.0.w", "removed"]);

    // Every live type has a block geometry now (NVFP4 too), so `UnknownGeometry` cannot be
    // built from a file; NVFP4 opens like any other type.
    let f = one_tensor(&[256], GgmlType::NVFP4.0, 0, 1024)
        .open()
        .unwrap();
    assert_eq!(f.tensor_at(0).unwrap().n_bytes, 4 * 36);
}

#[test]
fn row_length_must_be_whole_blocks() {
    // 128 x 2 holds 256 elements (one Q4_K block) but rows of half a block.
    let e = one_tensor(&[128, 2], GgmlType::Q4_K.0, 0, 144).err();
    assert!(
        matches!(
            e,
            GgufError::RowNotBlockMultiple {
                row_len: 128,
                block_elems: 256,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["blk.0.w", "row length 128", "Q4_K"]);
    // The same data as one row opens.
    one_tensor(&[256], GgmlType::Q4_K.0, 0, 144).open().unwrap();
}

#[test]
fn tensor_placement() {
    let e = one_tensor(&[8], 0, 8, 64).err();
    assert!(
        matches!(
            e,
            GgufError::MisalignedOffset {
                offset: 8,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["blk.0.w", "offset 8"]);

    let e = one_tensor(&[8], 0, 64, 32).err();
    assert!(matches!(e, GgufError::TensorBeyondFile { .. }), "{e}");
    names(&e, &["blk.0.w", "beyond"]);

    let e = one_tensor(&[8], 0, u64::MAX - 31, 32).err();
    assert!(matches!(e, GgufError::TensorBeyondFile { .. }), "{e}");

    let e = one_tensor(&[8], 0, 0, 31).err();
    assert!(
        matches!(e, GgufError::TensorDataTruncated { n_bytes: 32, .. }),
        "{e}"
    );
    names(&e, &["blk.0.w", "cut short"]);
}

#[test]
fn header_cut_short() {
    let b = valid();
    // Header 24, kv 34, tensor info 33 (its offset field at 83..91): cut inside that field.
    let e = open_all_ways(b.0[..85].to_vec()).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                offset: 83,
                needed: 8,
                available: 2,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["cut short", "tensor #0 `t` offset"]);
    let e = open_all_ways(b.0[..6].to_vec()).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    names(&e, &["version"]);
}

#[test]
fn writer_output_patched() {
    // Built by the writer, then one byte changed: the tensor's type id becomes 5 (removed).
    let mut w = quant_gguf::GgufWriter::new();
    w.add_tensor("x", &[32], GgmlType::Q8_0, vec![0u8; 34].into())
        .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    open_all_ways(bytes.clone()).unwrap();
    // Header 24 bytes, then name (8 + 1), n_dims (4), one dim (8), type (4).
    let type_at = 24 + 9 + 4 + 8;
    assert_eq!(bytes[type_at..type_at + 4], 8u32.to_le_bytes());
    bytes[type_at..type_at + 4].copy_from_slice(&5u32.to_le_bytes());
    let e = open_all_ways(bytes).unwrap_err();
    assert!(matches!(e, GgufError::RemovedTensorType { .. }), "{e}");
    names(&e, &["`x`", "Q4_3"]);
}

mod corruption {
    use super::*;
    use proptest::prelude::*;

    fn golden() -> &'static [u8] {
        static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        BYTES.get_or_init(|| {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/data/all-types.gguf");
            std::fs::read(p).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random bytes written over the header of a real file: never a panic, and whatever
        /// opens still hands out whole, in-bounds tensor slices.
        #[test]
        fn corrupted_headers_never_panic(
            edits in prop::collection::vec((0usize..2496, any::<u8>()), 1..8),
        ) {
            let mut bytes = golden().to_vec();
            for (at, b) in edits {
                bytes[at] = b;
            }
            match open_all_ways(bytes) {
                Ok(f) => {
                    for t in f.tensors() {
                        prop_assert_eq!(f.tensor_data(&t).unwrap().len() as u64, t.n_bytes);
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains(NAME)),
            }
        }
    }
}

/// Two F32 tensors `a` (dims `da`, offset `oa`) and `b` (dims `db`, offset `ob`), with `data`
/// bytes of data section.
fn two_tensors(da: u64, oa: u64, ty_a: u32, db: u64, ob: u64, data: usize) -> B {
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[da], ty_a, oa)
        .tensor("b", &[db], 0, ob)
        .pad(32)
        .zeros(data);
    b
}

/// Issue 12, fault 2: tensors whose data overlap are refused, naming both (ggml lays the data
/// section out tensor after tensor; an overlap is a file built to be read two ways).
#[test]
fn overlapping_tensors_are_refused() {
    let q8 = GgmlType::Q8_0.0;
    let cases = [
        // Same range.
        ("same range", two_tensors(8, 0, 0, 8, 0, 64)),
        // b starts inside a (a: 0..64, b: 32..64).
        ("partial overlap", two_tensors(16, 0, 0, 8, 32, 96)),
        // b lies inside a (a: 0..128, b: 32..64).
        ("one inside another", two_tensors(32, 0, 0, 8, 32, 128)),
        // a's offset pointed at b's data (b first in the data section: 0..32).
        ("offset pointing at another", two_tensors(8, 0, 0, 8, 0, 32)),
        // a was F32 [8] (32 bytes) and is now Q8_0 [64] (68 bytes): it runs into b at 64.
        ("type changed", {
            let mut b = B::header(3, 2, 0);
            b.tensor("a", &[64], q8, 0)
                .tensor("b", &[8], 0, 64)
                .pad(32)
                .zeros(96);
            b
        }),
        // Listed in the other order: a at 32..64 lies inside b at 0..64.
        ("listed out of order", two_tensors(8, 32, 0, 16, 0, 64)),
    ];
    for (what, b) in cases {
        let e = b.err();
        assert!(
            matches!(e, GgufError::OverlappingTensors { .. }),
            "{what}: {e}"
        );
        names(&e, &["`a`", "`b`", "overlap"]);
    }
    // Tensor after tensor, with and without alignment padding between them, opens.
    two_tensors(8, 0, 0, 8, 32, 64).open().unwrap();
    two_tensors(4, 0, 0, 4, 32, 64).open().unwrap();
    two_tensors(8, 64, 0, 8, 0, 96).open().unwrap();
}

/// Files written by quantforge's writer (tensor after tensor, padded to the alignment) open:
/// sizes that need padding and sizes that do not, with alignments 1 to 4096.
#[test]
fn writer_layouts_never_overlap() {
    for align in [1u32, 8, 32, 64, 4096] {
        let mut w = quant_gguf::GgufWriter::new();
        w.set_alignment(align);
        for (i, n) in [1u64, 8, 7, 32, 3].iter().enumerate() {
            w.add_tensor(
                format!("t{i}"),
                &[*n],
                GgmlType::F32,
                vec![i as u8; 4 * *n as usize].into(),
            )
            .unwrap();
        }
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        let f = open_all_ways(bytes).unwrap();
        assert_eq!(f.tensor_count(), 5);
    }
}

/// Issue 12, fault 3: keys and tensor names that are not what they seem. An empty key, a key or
/// tensor name holding NUL or another control character (a C reader comparing with `strcmp`
/// reads `general.alignment\0x` as the alignment; `w` and `w\0` print alike), and a tensor name
/// longer than ggml's 63 bytes are refused, naming the field, its index and the character.
#[test]
fn bad_keys_and_tensor_names_are_refused() {
    let bad_keys: [(&[u8], &str); 6] = [
        (b"", "empty"),
        (b"general.alignment\0", "U+0000"),
        (b"a\x1b]0;pwned\x07", "U+001B"),
        (b"line\nbreak", "U+000A"),
        (b"del\x7f", "U+007F"),
        ("c1\u{9b}2J".as_bytes(), "U+009B"),
    ];
    for (key, why) in bad_keys {
        let mut b = B::header(3, 0, 2);
        b.kv_u32("general.name.ok", 1);
        b.str(key).u32(MetaType::U32.id()).u32(64);
        let e = b.err();
        assert!(
            matches!(e, GgufError::BadKey { index: 1, .. }),
            "{key:?}: {e}"
        );
        names(&e, &["metadata key #1", why]);
        // The message holds no control character itself.
        assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
    }
    let long = "n".repeat(64);
    let bad_names: [(&str, &str); 4] = [
        ("w\0", "U+0000"),
        ("w\x1b[2J", "U+001B"),
        ("w\r", "U+000D"),
        (&long, "64 bytes"),
    ];
    for (name, why) in bad_names {
        let mut b = B::header(3, 2, 0);
        b.tensor("w", &[8], 0, 0)
            .tensor(name, &[8], 0, 32)
            .pad(32)
            .zeros(64);
        let e = b.err();
        assert!(
            matches!(e, GgufError::BadTensorName { index: 1, .. }),
            "{name:?}: {e}"
        );
        names(&e, &["tensor #1", why]);
        assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
    }
    // 63 bytes is ggml's longest name (GGML_MAX_NAME is 64 with the NUL), and opens; so do
    // non-ASCII names and keys.
    let mut b = B::header(3, 1, 1);
    b.kv_u32("général.clé", 1)
        .tensor(&"n".repeat(63), &[8], 0, 0)
        .pad(32)
        .zeros(32);
    b.open().unwrap();
}

/// The writer refuses what the reader would: bad keys and tensor names never reach a file.
#[test]
fn the_writer_refuses_bad_keys_and_names() {
    let mut w = quant_gguf::GgufWriter::new();
    for key in ["", "a\0", "b\x1b"] {
        let e = w.add_metadata(key, MetaValue::U8(1)).unwrap_err();
        assert!(matches!(e, GgufError::WriterBadValue { .. }), "{e}");
        assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
    }
    for name in ["t\0", "t\u{85}", &"x".repeat(64)] {
        let e = w
            .add_tensor(name, &[8], GgmlType::F32, vec![0; 32].into())
            .unwrap_err();
        assert!(matches!(e, GgufError::WriterBadTensor { .. }), "{e}");
    }
    assert!(quant_gguf::key_problem("general.name").is_none());
    assert!(quant_gguf::tensor_name_problem(&"x".repeat(63)).is_none());
}

/// Issue 12, fault 5: `general.alignment` is bounded to the powers of two from 1 to 65 536
/// (ggml accepts any power of two; real files use 32 to 4096), so a tiny file cannot make an
/// output padded to 2 GiB; the writer refuses what the reader refuses.
#[test]
fn alignment_is_bounded() {
    for bad in [1u32 << 17, 1 << 20, 1 << 31] {
        let mut b = B::header(3, 0, 1);
        b.kv_u32("general.alignment", bad);
        let e = b.err();
        assert!(
            matches!(e, GgufError::BadAlignment { value, .. } if value == bad),
            "{e}"
        );
        names(&e, &["general.alignment", "65536"]);
        let mut w = quant_gguf::GgufWriter::new();
        w.set_alignment(bad);
        assert!(matches!(
            w.write_to(Vec::new()),
            Err(GgufError::WriterBadAlignment { .. })
        ));
    }
    for good in [1u32, 8, 4096, 1 << 16] {
        let mut b = B::header(3, 1, 1);
        b.kv_u32("general.alignment", good)
            .tensor("t", &[8], 0, 0)
            .pad(good as usize)
            .zeros(32);
        assert_eq!(b.open().unwrap().alignment(), u64::from(good));
    }
}

/// The writer pads only for tensors: a file without tensors ends with its header, whatever the
/// alignment (a 64 KiB alignment used to pad it to 64 KiB; a 2^31 one to 2 GiB).
#[test]
fn a_file_without_tensors_is_not_padded() {
    for align in [32u32, 4096, 1 << 16] {
        let mut w = quant_gguf::GgufWriter::new();
        w.set_alignment(align);
        w.add_metadata("general.name", MetaValue::String("x".into()))
            .unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        assert!(
            bytes.len() < 256,
            "alignment {align}: {} bytes",
            bytes.len()
        );
        let f = open_all_ways(bytes).unwrap();
        assert_eq!(f.alignment(), u64::from(align));
        assert!(f.tensor_count() == 0);
    }
}

/// Issue 12, fault 7: messages that say what is wrong plainly.
#[test]
fn messages_say_what_is_wrong_plainly() {
    // A tensor count larger than the tensors listed: the zeros after the last one read as a
    // tensor with an empty name and no dimensions; the message says which index.
    let mut b = B::header(3, 2, 0);
    b.tensor("w", &[8], 0, 0).pad(32).zeros(64);
    let e = b.err();
    assert!(
        matches!(
            e,
            GgufError::BadDimCount {
                tensor_index: 1,
                n_dims: 0,
                ..
            }
        ),
        "{e}"
    );
    names(&e, &["tensor #1 ``", "0 dimensions"]);

    // A bad magic in hex and as text; GGUF's magic byte-swapped is named a big-endian file.
    let mut b = valid();
    b.0[..4].copy_from_slice(b"FUGG");
    let e = b.err();
    names(&e, &["0x46 0x55 0x47 0x47 (\"FUGG\")", "big-endian"]);
    let e = open_all_ways(b"\x7fELF\x02\x01".to_vec()).unwrap_err();
    names(&e, &["0x7f 0x45 0x4c 0x46 (\"\\x7fELF\")"]);
    assert!(!e.to_string().contains("big-endian"), "{e}");
}

/// A directory is "a directory", not "No such device" (what mapping one says).
#[test]
fn a_directory_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    for mmap in [true, false] {
        let e = GgufFile::open_with(dir.path(), OpenOptions { mmap }).unwrap_err();
        assert!(matches!(e, GgufError::Io { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("is a directory"), "{msg}");
        assert!(!msg.contains("No such device"), "{msg}");
    }
}
