// Shared check for the `roundtrip` fuzz target and its corpus replay test
// (`crates/quant-gguf/tests/fuzz_corpus.rs`). Included with `#[path]` from both. Needs only
// `quant_core` and `quant_gguf`. The input is decoded by a small deterministic byte reader (no
// `arbitrary` crate), so a corpus file means the same thing to the fuzzer and to the replay test.

/// Reads small numbers and byte strings from the fuzz input; yields zeros once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    /// A string of up to 15 bytes; invalid UTF-8 is replaced, so the result is any valid string.
    fn string(&mut self) -> String {
        let n = usize::from(self.u8() % 16);
        String::from_utf8_lossy(&self.bytes(n)).into_owned()
    }
}

fn gen_value(b: &mut Bytes, ty: quant_gguf::MetaType, depth: usize) -> quant_gguf::MetaValue {
    use quant_gguf::{MetaArray, MetaType as T, MetaValue as V};
    match ty {
        T::U8 => V::U8(b.u8()),
        T::I8 => V::I8(b.u8() as i8),
        T::U16 => V::U16(u16::from_le_bytes(b.take())),
        T::I16 => V::I16(i16::from_le_bytes(b.take())),
        T::U32 => V::U32(u32::from_le_bytes(b.take())),
        T::I32 => V::I32(i32::from_le_bytes(b.take())),
        T::F32 => V::F32(f32::from_bits(u32::from_le_bytes(b.take()))),
        T::Bool => V::Bool(b.u8() & 1 == 1),
        T::String => V::String(b.string()),
        T::U64 => V::U64(u64::from_le_bytes(b.take())),
        T::I64 => V::I64(i64::from_le_bytes(b.take())),
        T::F64 => V::F64(f64::from_bits(u64::from_le_bytes(b.take()))),
        T::Array => {
            // Element type; arrays of arrays only while shallow, so inputs stay cheap.
            let mut elem = T::ALL[usize::from(b.u8()) % T::ALL.len()];
            if elem == T::Array && depth >= 3 {
                elem = T::U8;
            }
            let n = usize::from(b.u8() % 8);
            let values = (0..n).map(|_| gen_value(b, elem, depth + 1)).collect();
            V::Array(MetaArray::new(elem, values))
        }
    }
}

/// Equality that compares floats by their bits (NaN payloads and signs of zero included).
pub fn meta_bits_eq(a: &quant_gguf::MetaValue, b: &quant_gguf::MetaValue) -> bool {
    use quant_gguf::MetaValue as V;
    match (a, b) {
        (V::F32(x), V::F32(y)) => x.to_bits() == y.to_bits(),
        (V::F64(x), V::F64(y)) => x.to_bits() == y.to_bits(),
        (V::Array(x), V::Array(y)) => {
            x.elem_type() == y.elem_type()
                && x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(p, q)| meta_bits_eq(&p, &q))
        }
        (V::F32(_) | V::F64(_) | V::Array(_), _) => false,
        _ => a == b,
    }
}

/// Builds metadata and tensors from `data`, writes them with `GgufWriter`, reads the file back
/// with `GgufFile::from_bytes` and requires everything to come back identical (floats by bits).
/// Entries the writer rejects (duplicate key or name) are dropped, and must be rejected for a
/// reason the reader would also refuse. Panics on a broken promise.
pub fn check_roundtrip(data: &[u8]) {
    use quant_core::GgmlType;
    use quant_gguf::{GgufError, GgufFile, GgufWriter, MetaType, MetaValue};
    use std::borrow::Cow;

    let mut b = Bytes(data);
    let mut w = GgufWriter::new();

    // Alignment: mostly the default, else a power of two up to 256, or an invalid one.
    let align_sel = b.u8();
    let alignment: Option<u32> = match align_sel % 16 {
        0..=9 => Some(32),
        10..=14 => Some(1 << (align_sel / 16 % 9)),
        _ => None, // not a power of two
    };
    match alignment {
        Some(a) if a != 32 => w.set_alignment(a),
        Some(_) => {}
        None => w.set_alignment(3 * u32::from(align_sel / 16 + 1)),
    }

    let mut meta: Vec<(String, MetaValue)> = Vec::new();
    for _ in 0..b.u8() % 8 {
        let key = b.string();
        let ty = MetaType::ALL[usize::from(b.u8()) % MetaType::ALL.len()];
        let v = gen_value(&mut b, ty, 0);
        let dup = meta.iter().any(|(k, _)| *k == key);
        match w.add_metadata(key.clone(), v.clone()) {
            Ok(()) => {
                assert!(!dup, "duplicate key `{key}` accepted");
                assert_ne!(
                    key, "general.alignment",
                    "a random value became the alignment"
                );
                meta.push((key, v));
            }
            Err(GgufError::WriterDuplicateKey { .. }) => assert!(dup),
            // Keys the reader would refuse too (empty, control characters).
            Err(GgufError::WriterBadValue { .. }) if quant_gguf::key_problem(&key).is_some() => {}
            Err(e) => assert!(
                key == "general.alignment",
                "writer rejected `{key}` = {v:?}: {e}"
            ),
        }
    }

    // Tensor types the reader can size.
    let types: Vec<GgmlType> = GgmlType::all_known()
        .filter(|t| !t.is_removed() && t.geometry().is_some())
        .collect();
    let mut tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)> = Vec::new();
    for _ in 0..b.u8() % 5 {
        let name = b.string();
        let ty = types[usize::from(b.u8()) % types.len()];
        let g = ty.geometry().unwrap();
        let n_dims = 1 + usize::from(b.u8() % 4);
        let mut dims = vec![g.block_elems as u64 * u64::from(1 + b.u8() % 3)];
        for _ in 1..n_dims {
            dims.push(u64::from(1 + b.u8() % 3));
        }
        let n: u64 = dims.iter().product();
        let n_bytes = (n / g.block_elems as u64 * g.block_bytes as u64) as usize;
        let bytes = b.bytes(n_bytes);
        let dup = tensors.iter().any(|t| t.0 == name);
        match w.add_tensor(name.clone(), &dims, ty, Cow::Owned(bytes.clone())) {
            Ok(()) => {
                assert!(!dup, "duplicate tensor `{name}` accepted");
                tensors.push((name, dims, ty, bytes));
            }
            Err(GgufError::WriterDuplicateTensor { .. }) => assert!(dup),
            // Names the reader would refuse too (control characters; over 63 bytes).
            Err(GgufError::WriterBadTensor { .. })
                if quant_gguf::tensor_name_problem(&name).is_some() => {}
            Err(e) => panic!("writer rejected tensor `{name}` {dims:?} {ty}: {e}"),
        }
    }

    let mut out = Vec::new();
    let Some(alignment) = alignment else {
        let e = w.write_to(&mut out).unwrap_err();
        assert!(matches!(e, GgufError::WriterBadAlignment { .. }), "{e}");
        return;
    };
    w.write_to(&mut out)
        .expect("writer accepted everything it was given");

    let f = GgufFile::from_bytes(out, "roundtrip.gguf").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), u64::from(alignment));
    let mut want = meta;
    if alignment != 32 {
        want.push(("general.alignment".to_owned(), MetaValue::U32(alignment)));
    }
    let got = f.metadata();
    assert_eq!(got.len(), want.len(), "metadata count");
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        assert!(meta_bits_eq(gv, wv), "`{wk}`: wrote {wv:?}, read {gv:?}");
    }
    assert_eq!(f.tensor_count(), tensors.len(), "tensor count");
    for (t, (name, dims, ty, bytes)) in f.tensors().zip(&tensors) {
        assert_eq!(&t.name, name);
        assert_eq!(&t.dims, dims);
        assert_eq!(t.ty, *ty);
        assert_eq!(t.offset % u64::from(alignment), 0);
        let data = f
            .tensor_data(&t)
            .unwrap_or_else(|e| panic!("tensor `{name}`: {e}"));
        assert_eq!(&*data, &bytes[..], "tensor `{name}` data");
    }
}
