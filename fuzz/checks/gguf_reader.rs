// Shared check for the `gguf_reader` fuzz target and its corpus replay test
// (`crates/quant-gguf/tests/fuzz_corpus.rs`). Included with `#[path]` from both, so the fuzzer and
// CI run the same assertions. Needs only `quant_gguf`.

/// Name under which inputs are opened; every reader error must start with it.
pub const GGUF_FUZZ_NAME: &str = "fuzz.gguf";

/// Parses `data` as a GGUF file. On success touches every metadata value and every tensor's
/// bytes and checks the reader's promises (tensor data inside the file, aligned, sized by its
/// geometry; lookups consistent). On failure checks that the error names the file. Panics on a
/// broken promise; returns whether the file parsed.
pub fn check_gguf_reader(data: &[u8]) -> bool {
    use quant_gguf::{GgufFile, MetaValue};

    // Walks a value completely; returns a number depending on all of it, so nothing is skipped.
    fn touch(v: &MetaValue, depth: usize) -> u64 {
        assert!(
            depth <= quant_gguf::MAX_ARRAY_DEPTH,
            "nesting beyond the limit"
        );
        match v {
            MetaValue::String(s) => s.len() as u64 + s.bytes().map(u64::from).sum::<u64>(),
            MetaValue::Array(a) => {
                let mut h = a.len() as u64;
                for e in a.iter() {
                    assert_eq!(
                        e.type_of(),
                        a.elem_type(),
                        "array element of the wrong type"
                    );
                    h = h.wrapping_add(touch(&e, depth + 1));
                }
                h
            }
            MetaValue::F32(x) => u64::from(x.to_bits()),
            MetaValue::F64(x) => x.to_bits(),
            MetaValue::Bool(b) => u64::from(*b),
            other => other.as_u64().unwrap_or(1),
        }
    }

    let f = match GgufFile::from_bytes(data.to_vec(), GGUF_FUZZ_NAME) {
        Ok(f) => f,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(GGUF_FUZZ_NAME),
                "error does not name the file: {msg}"
            );
            return false;
        }
    };

    assert!(f.version() == 2 || f.version() == 3);
    let align = f.alignment();
    assert!(align.is_power_of_two());
    assert_eq!(f.data_offset() % align, 0);
    assert_eq!(f.file_len(), data.len() as u64);

    let mut h = 0u64;
    for (key, value) in f.metadata() {
        assert_eq!(f.get(key).map(|v| v as *const _), Some(value as *const _));
        h = h.wrapping_add(touch(value, 0));
        // Display must be bounded and never panic.
        let shown = value.to_string();
        assert!(
            shown.len() < 4096,
            "Display of `{key}` is {} bytes",
            shown.len()
        );
    }

    assert_eq!(f.tensor_count(), f.tensor_count());
    assert!(f.tensor_names().eq(f.tensors().map(|t| t.name)));
    for (i, t) in f.tensors().enumerate() {
        assert_eq!(f.tensor(&t.name).as_ref(), Some(&t));
        assert_eq!(f.tensor_at(i).as_ref(), Some(&t));
        assert!(!t.dims.is_empty() && t.dims.len() <= quant_gguf::MAX_DIMS);
        assert!(t.dims.iter().all(|&d| d > 0));
        let n: u64 = t.dims.iter().product();
        assert_eq!(n, t.n_elements);
        let g =
            t.ty.geometry()
                .expect("a listed tensor has a known geometry");
        assert_eq!(t.dims[0] % g.block_elems as u64, 0);
        assert_eq!(
            t.n_bytes,
            t.n_elements / g.block_elems as u64 * g.block_bytes as u64
        );
        assert_eq!(t.offset % align, 0);
        let end = f.data_offset() + t.offset + t.n_bytes;
        assert!(
            end <= data.len() as u64,
            "tensor `{}` ends past the file",
            t.name
        );
        let bytes = f
            .tensor_data(&t)
            .unwrap_or_else(|e| panic!("a listed tensor must read: {e}"));
        assert_eq!(bytes.len() as u64, t.n_bytes);
        let start = (f.data_offset() + t.offset) as usize;
        assert_eq!(&*bytes, &data[start..start + bytes.len()]);
        h = h.wrapping_add(bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
    }
    std::hint::black_box(h);
    true
}
