//! Helpers shared by quantforge's cross-crate tests: where the test data lives and how to read
//! the golden `.sha256` manifests (one line per tensor:
//! `sha256-of-little-endian-f32-bits  name  source-type  element-count`).
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `tests/data`: `QUANTFORGE_TEST_DATA` if set, else this crate's folder as built, else
/// `tests/data` under the current directory (for test binaries run on another machine).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QUANTFORGE_TEST_DATA") {
        return PathBuf::from(dir);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("tests/data")
    }
}

/// One manifest line.
#[derive(Clone, Debug)]
pub struct Expected {
    /// Hex sha256 of the tensor's f32 values as little-endian bytes.
    pub sha256: String,
    /// Tensor name.
    pub name: String,
    /// ggml type name in the source file.
    pub ty: String,
    /// Element count.
    pub elements: u64,
}

/// Every golden GGUF file with its manifest, sorted by file name.
pub fn golden_files() -> Vec<(PathBuf, Vec<Expected>)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(data_dir())
        .expect("tests/data exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sha256"))
        .collect();
    entries.sort();
    for manifest in entries {
        let gguf = manifest.with_extension("gguf");
        let text = std::fs::read_to_string(&manifest).expect("readable manifest");
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(
                    f.len(),
                    4,
                    "{}: bad manifest line {l:?}",
                    manifest.display()
                );
                Expected {
                    sha256: f[0].to_string(),
                    name: f[1].to_string(),
                    ty: f[2].to_string(),
                    elements: f[3].parse().expect("element count"),
                }
            })
            .collect();
        out.push((gguf, lines));
    }
    assert!(
        !out.is_empty(),
        "no golden manifests in {}",
        data_dir().display()
    );
    out
}

/// Hex sha256 of f32 values as little-endian bytes.
pub fn sha256_f32(values: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether GPU output equals the CPU reference in the GPU sense of bit-exact: the same bits for
/// every value that is not NaN, and a NaN wherever the reference has one. Returns the index of the
/// first difference.
pub fn first_gpu_mismatch(reference: &[f32], got: &[f32]) -> Option<usize> {
    if reference.len() != got.len() {
        return Some(reference.len().min(got.len()));
    }
    reference
        .iter()
        .zip(got)
        .position(|(r, g)| !(r.to_bits() == g.to_bits() || (r.is_nan() && g.is_nan())))
}

/// Writes a GGUF file of random tensors: `(name, type, row length, rows)` each.
pub fn write_random_model(path: &Path, tensors: &[(&str, quantforge::core::GgmlType, u64, u64)]) {
    let mut w = quantforge::gguf::GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        quantforge::gguf::MetaValue::String("synthetic".into()),
    )
    .unwrap();
    for (i, &(name, ty, row, rows)) in tensors.iter().enumerate() {
        let g = ty.geometry().expect("known geometry");
        let bytes = (row * rows) as usize / g.block_elems * g.block_bytes;
        w.add_tensor(
            name,
            &[row, rows],
            ty,
            quantforge::core::random_bytes(bytes, 0xfeed + i as u64).into(),
        )
        .unwrap();
    }
    w.write_file(path).unwrap();
}

/// The GPU the GPU suites run on: `None` (with a visible SKIPPED line) unless
/// `QUANTFORGE_GPU_TESTS=1`; then a missing GPU panics. `QUANTFORGE_GPU_KIND=hip` picks HIP.
/// The switch is `quantforge::gpu::testing`'s, shared with the backends' own suites.
pub fn test_gpu(test: &str) -> Option<Box<dyn quantforge::gpu::Backend>> {
    use quantforge::gpu::testing::{expect_device, gpu_test_kind};
    use quantforge::gpu::DeviceSpec;
    let kind = gpu_test_kind(test)?;
    let b = expect_device(kind, quantforge::device::open(DeviceSpec::Gpu(kind, 0)))
        .expect("a GPU spec opens a GPU");
    eprintln!("GPU test {test} on {}", b.info());
    Some(b)
}
