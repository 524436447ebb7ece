//! Test support shared by the four format crates (included with `#[path]`): a minimal GGUF v3
//! header walker and a golden-data checker.
//!
//! The real GGUF reader is a separate crate; the format crates must not depend on it, so their
//! golden tests locate tensor bytes with this small walker instead. It trusts nothing the file
//! claims: every length is checked against the file before use.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use quant_core::cpu::{self, CpuPath};
use quant_core::QuantFormat;
use sha2::{Digest, Sha256};

/// One tensor info of a GGUF file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    /// Offset from the start of the data section.
    pub offset: u64,
}

/// A GGUF file read into memory, with its tensor infos.
pub struct Gguf {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: usize,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| format!("{what}: length {n} too large"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("{what}: {n} bytes at {} run past the end", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.u64(what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|e| format!("{what}: {e}"))
    }
    /// Skips one metadata value of type `vt`; returns it as u64 when it is an integer.
    fn value(&mut self, vt: u32, what: &str) -> Result<Option<u64>, String> {
        let fixed = match vt {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        if let Some(n) = fixed {
            let b = self.take(n, what)?;
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            return Ok(Some(u64::from_le_bytes(a)));
        }
        match vt {
            8 => {
                self.string(what)?;
            }
            9 => {
                let et = self.u32(what)?;
                let count = self.u64(what)?;
                for _ in 0..count {
                    self.value(et, what)?;
                }
            }
            _ => return Err(format!("{what}: unknown value type {vt}")),
        }
        Ok(None)
    }
}

impl Gguf {
    /// Reads and walks a GGUF (v2/v3) file.
    pub fn open(path: &Path) -> Result<Gguf, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, bytes)
    }

    /// Walks the header of a GGUF (v2/v3) file held in memory; `path` is for messages only.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Gguf, String> {
        let mut c = Cursor {
            buf: &bytes,
            pos: 0,
        };
        if c.take(4, "magic")? != b"GGUF" {
            return Err(format!("{}: not a GGUF file", path.display()));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(format!("{}: GGUF version {version}", path.display()));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("kv count")?;
        let mut alignment = 32u64;
        for _ in 0..n_kv {
            let key = c.string("key")?;
            let vt = c.u32(&key)?;
            let v = c.value(vt, &key)?;
            if key == "general.alignment" {
                alignment = v.filter(|&a| a > 0).ok_or("bad general.alignment")?;
            }
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims > 8 {
                return Err(format!("{name}: {n_dims} dims"));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64(&name))
                .collect::<Result<Vec<_>, _>>()?;
            let ty = c.u32(&name)?;
            let offset = c.u64(&name)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let data_start = usize::try_from(data_start).map_err(|e| e.to_string())?;
        Ok(Gguf {
            path: path.to_path_buf(),
            bytes,
            tensors,
            data_start,
        })
    }

    /// Element count of a tensor.
    pub fn elements(t: &TensorInfo) -> Result<u64, String> {
        t.dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("{}: element count overflows", t.name))
    }

    /// The bytes of tensor `t`, stored as `format`.
    pub fn tensor_bytes(&self, t: &TensorInfo, format: &dyn QuantFormat) -> Result<&[u8], String> {
        let g = format.geometry();
        let n = Self::elements(t)?;
        if n % g.block_elems as u64 != 0 {
            return Err(format!("{}: {n} elements are not whole blocks", t.name));
        }
        let len = (n / g.block_elems as u64)
            .checked_mul(g.block_bytes as u64)
            .ok_or("size overflows")?;
        let start = (self.data_start as u64)
            .checked_add(t.offset)
            .ok_or("offset overflows")?;
        let end = start.checked_add(len).ok_or("end overflows")?;
        if end > self.bytes.len() as u64 {
            return Err(format!(
                "{}: bytes {start}..{end} past the end of {}",
                t.name,
                self.path.display()
            ));
        }
        Ok(&self.bytes[start as usize..end as usize])
    }
}

/// One manifest line: `sha256-of-LE-f32-bits  name  TYPE  element-count`.
#[derive(Debug, Clone)]
pub struct ManifestLine {
    pub sha256: String,
    pub name: String,
    pub type_name: String,
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
        let gguf = Gguf::open(&gguf_path).unwrap_or_else(|e| panic!("{e}"));
        let manifest = read_manifest(&manifest_path).unwrap_or_else(|e| panic!("{e}"));
        // Every tensor of this type in the file must be in the manifest ...
        for t in gguf.tensors.iter().filter(|t| t.ty == format.ggml_type().0) {
            if !manifest.iter().any(|m| m.name == t.name) {
                failures.push(format!("{file}:{}: no manifest line", t.name));
            }
        }
        // ... and every manifest line of this type must match its tensor.
        for line in manifest.iter().filter(|m| m.type_name == format.name()) {
            let Some(t) = gguf.tensors.iter().find(|t| t.name == line.name) else {
                failures.push(format!("{file}:{}: tensor missing", line.name));
                continue;
            };
            if t.ty != format.ggml_type().0 {
                failures.push(format!("{file}:{}: type id {}", line.name, t.ty));
                continue;
            }
            if Gguf::elements(t).ok() != Some(line.elements) {
                failures.push(format!("{file}:{}: element count", line.name));
                continue;
            }
            let src = gguf
                .tensor_bytes(t, format)
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
