//! The golden files in `tests/data` (workspace root): every one is read and held against its
//! `*.sha256` manifest, and one is truncated at every byte of its header and at a sample of
//! offsets in its data.

use std::path::{Path, PathBuf};

use quant_core::GgmlType;
use quant_gguf::{GgufError, GgufFile, OpenOptions};
use sha2::{Digest, Sha256};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// One manifest line: `sha256  name  TYPE  element-count`.
struct Entry {
    sha256: String,
    name: String,
    ty: String,
    n_elements: u64,
}

fn manifest(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "bad manifest line in {}: {l:?}", path.display());
            Entry {
                sha256: f[0].to_owned(),
                name: f[1].to_owned(),
                ty: f[2].to_owned(),
                n_elements: f[3].parse().unwrap(),
            }
        })
        .collect()
}

fn golden_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_golden_file_matches_its_manifest() {
    let files = golden_files();
    assert!(
        files.len() >= 6,
        "expected the golden files, found {files:?}"
    );
    // F32 tensors hashed across all files (new-types.gguf holds none of its own).
    let mut f32_checked = 0;
    for path in files {
        let f = GgufFile::open(&path).unwrap();
        let read = GgufFile::open_with(&path, OpenOptions { mmap: false }).unwrap();
        let entries = manifest(&path.with_extension("sha256"));
        let shown = path.display();
        assert_eq!(f.tensor_count(), entries.len(), "{shown}: tensor count");
        assert_eq!(f.version(), 3, "{shown}");
        assert_eq!(f.data_offset() % f.alignment(), 0, "{shown}");
        for (t, e) in f.tensors().zip(&entries) {
            // Manifests list tensors in file order.
            assert_eq!(t.name, e.name, "{shown}");
            assert_eq!(t.ty.name(), Some(e.ty.as_str()), "{shown}: {}", t.name);
            assert_eq!(t.n_elements, e.n_elements, "{shown}: {}", t.name);
            assert_eq!(t.dims.iter().product::<u64>(), e.n_elements);
            let g = t.ty.geometry().unwrap();
            assert_eq!(
                t.n_bytes,
                e.n_elements / g.block_elems as u64 * g.block_bytes as u64
            );
            let data = f.tensor_data(&t).unwrap();
            assert_eq!(data.len() as u64, t.n_bytes);
            assert_eq!(
                data,
                read.tensor_data(&read.tensor(&t.name).unwrap()).unwrap()
            );
            // The manifests hash the dequantized f32 values; for F32 tensors those are the
            // stored bytes themselves.
            if t.ty == GgmlType::F32 {
                let hash = Sha256::digest(&data);
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(hex, e.sha256, "{shown}: {}", t.name);
                f32_checked += 1;
            }
        }
        assert_eq!(f.metadata(), read.metadata());
    }
    assert!(f32_checked > 0, "no F32 tensor to hash");
}

#[test]
fn tiny_llama_metadata() {
    let f = GgufFile::open(data_dir().join("tiny-llama-q4_k_m.gguf")).unwrap();
    assert_eq!(
        f.get("general.architecture").and_then(|v| v.as_str()),
        Some("llama")
    );
    assert_eq!(
        f.get("llama.embedding_length").and_then(|v| v.as_u64()),
        Some(256)
    );
    let tokens = f.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    let scores = f.get("tokenizer.ggml.scores").unwrap().as_array().unwrap();
    assert_eq!(tokens.len(), scores.len());
    assert!(!tokens.is_empty());
    let out = f.tensor("output.weight").unwrap();
    assert_eq!(out.dims, vec![256, 256]);
    assert_eq!(out.ty, GgmlType::Q6_K);
    assert_eq!(out.offset, 0);
}

/// Errors a truncated file may give: all about bytes missing, none about content.
fn is_truncation_error(e: &GgufError) -> bool {
    matches!(
        e,
        GgufError::Truncated { .. }
            | GgufError::BadMagic { .. }
            | GgufError::CountTooLarge { .. }
            | GgufError::StringTooLong { .. }
            | GgufError::TensorBeyondFile { .. }
            | GgufError::TensorDataTruncated { .. }
    )
}

#[test]
fn truncation_at_any_byte_is_an_error() {
    let bytes = std::fs::read(data_dir().join("tiny-llama-q4_k_m.gguf")).unwrap();
    let full = GgufFile::from_bytes(bytes.clone(), "full.gguf").unwrap();
    let data_offset = full.data_offset() as usize;
    let len = bytes.len();

    // Every byte of the header, tensor infos and padding, then a sample of the data region:
    // a prime stride, the bytes around every tensor boundary, and the last bytes.
    let mut cuts: Vec<usize> = (0..=data_offset).collect();
    cuts.extend((data_offset..len).step_by(997));
    for t in full.tensors() {
        let start = data_offset + t.offset as usize;
        let end = start + t.n_bytes as usize;
        cuts.extend([start, start + 1, end.saturating_sub(1), end]);
    }
    cuts.extend(len - 4..len);
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    assert!(cuts.len() > data_offset + 500);

    for cut in cuts {
        match GgufFile::from_bytes(bytes[..cut].to_vec(), "cut.gguf") {
            Ok(_) => panic!("file cut at {cut} of {len} bytes opened without error"),
            Err(e) => {
                assert!(
                    is_truncation_error(&e),
                    "cut at {cut}: unexpected error {e}"
                );
                assert!(e.to_string().contains("cut.gguf"), "{e}");
            }
        }
    }
}
