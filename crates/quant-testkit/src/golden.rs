//! The golden-data checker. Tensors are found with the project's own GGUF reader
//! (`quant-gguf`: it knows nothing of formats, so no cycle).

use std::path::{Path, PathBuf};

use quant_core::cpu::{self, CpuPath};
use quant_core::QuantFormat;
use quant_gguf::GgufFile;
use sha2::{Digest, Sha256};

/// One manifest line: `sha256-of-LE-f32-bits  name  TYPE  element-count`.
#[derive(Debug, Clone)]
pub struct ManifestLine {
    /// sha256 of the tensor's little-endian f32 bits, lower-case hex.
    pub sha256: String,
    /// Tensor name.
    pub name: String,
    /// ggml type name of the source tensor.
    pub type_name: String,
    /// Element count.
    pub elements: u64,
}

/// Parses a `.sha256` manifest.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 4 {
                return Err(format!("{}: bad line {l:?}", path.display()));
            }
            Ok(ManifestLine {
                sha256: f[0].to_ascii_lowercase(),
                name: f[1].to_string(),
                type_name: f[2].to_string(),
                elements: f[3].parse().map_err(|e| format!("{l:?}: {e}"))?,
            })
        })
        .collect()
}

/// The workspace's `tests/data` folder.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// Every `(gguf, manifest)` pair in `tests/data`, sorted.
pub fn golden_pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut out: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(data_dir())
        .expect("tests/data exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .map(|p| {
            let m = p.with_extension("sha256");
            (p, m)
        })
        .filter(|(_, m)| m.exists())
        .collect();
    out.sort();
    out
}

/// sha256 of the little-endian bytes of `values`, as lower-case hex.
pub fn sha256_f32(values: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_bits().to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every tensor of `format`'s type in every golden file against its manifest line, through
/// the reference, the single-threaded fast path and the multi-core checked entry point. Returns
/// the names checked (`file:tensor`); panics with a full list of mismatches.
pub fn check_golden(format: &dyn QuantFormat) -> Vec<String> {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for (gguf_path, manifest_path) in golden_pairs() {
        let file = gguf_path.file_name().unwrap().to_string_lossy().to_string();
        let gguf = GgufFile::open(&gguf_path).unwrap_or_else(|e| panic!("{e}"));
        let manifest = read_manifest(&manifest_path).unwrap_or_else(|e| panic!("{e}"));
        // Every tensor of this type in the file must be in the manifest ...
        for t in gguf.tensors().filter(|t| t.ty == format.ggml_type()) {
            if !manifest.iter().any(|m| m.name == t.name) {
                failures.push(format!("{file}:{}: no manifest line", t.name));
            }
        }
        // ... and every manifest line of this type must match its tensor.
        for line in manifest.iter().filter(|m| m.type_name == format.name()) {
            let Some(t) = gguf.tensor(&line.name) else {
                failures.push(format!("{file}:{}: tensor missing", line.name));
                continue;
            };
            if t.ty != format.ggml_type() {
                failures.push(format!("{file}:{}: type {}", line.name, t.ty));
                continue;
            }
            if t.n_elements != line.elements {
                failures.push(format!("{file}:{}: element count", line.name));
                continue;
            }
            let src = &*gguf
                .tensor_data(&t)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let n = line.elements as usize;

            let mut reference = vec![0f32; n];
            format.dequantize_reference(src, &mut reference);
            let mut fast = vec![0f32; n];
            format.dequantize_fast(src, &mut fast);
            let mut parallel = vec![0f32; n];
            cpu::dequantize(format, src, &mut parallel, CpuPath::Fast).unwrap();

            for (path, out) in [
                ("reference", &reference),
                ("fast", &fast),
                ("cpu::dequantize Fast", &parallel),
            ] {
                let got = sha256_f32(out);
                if got != line.sha256 {
                    let nans = out.iter().filter(|v| v.is_nan()).count();
                    failures.push(format!(
                        "{file}:{} via {path}: sha256 {got} != {} ({nans} NaNs in output)",
                        line.name, line.sha256
                    ));
                }
            }
            checked.push(format!("{file}:{}", line.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches for {}:\n{}",
        failures.len(),
        format.name(),
        failures.join("\n")
    );
    checked
}
