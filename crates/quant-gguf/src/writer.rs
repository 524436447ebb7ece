//! [`GgufWriter`]: builds a GGUF v3 file from metadata and tensors.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use quant_core::GgmlType;

use crate::parse::{tensor_size, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH};
use crate::{GgufError, MetaValue};

const ALIGNMENT_KEY: &str = "general.alignment";

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Cow<'a, [u8]>,
}

/// Builds a GGUF v3 file: metadata in the order added, then tensor infos, then the data of each
/// tensor, each padded with zeros to the alignment (the last one included, as ggml and gguf-py
/// do). Tensor data may be borrowed (`Cow::Borrowed`) to avoid copies.
///
/// ```
/// # use std::borrow::Cow;
/// # use quant_core::GgmlType;
/// # use quant_gguf::{GgufFile, GgufWriter, MetaValue};
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", MetaValue::String("llama".into()))?;
/// let bytes = vec![0u8; 4 * 8];
/// w.add_tensor("t", &[8], GgmlType::F32, Cow::Borrowed(&bytes))?;
/// let mut out = Vec::new();
/// w.write_to(&mut out)?;
/// let f = GgufFile::from_bytes(out, "doc.gguf")?;
/// assert_eq!(f.tensor_data(f.tensor("t").unwrap()), &bytes[..]);
/// # Ok::<(), quant_gguf::GgufError>(())
/// ```
pub struct GgufWriter<'a> {
    alignment: u32,
    metadata: Vec<(String, MetaValue)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty writer with the default alignment, 32.
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Sets the alignment of the data section and tensor offsets. When it is not 32,
    /// `general.alignment` is written too (at the end of the metadata, unless it was added
    /// explicitly, in which case that entry is updated). Zero or a non-power of two makes
    /// [`write_to`](Self::write_to) fail with [`GgufError::WriterBadAlignment`].
    pub fn set_alignment(&mut self, a: u32) {
        self.alignment = a;
        if let Some((_, v)) = self.metadata.iter_mut().find(|(k, _)| k == ALIGNMENT_KEY) {
            *v = MetaValue::U32(a);
        }
    }

    /// The alignment that will be used.
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Adds a metadata pair. Errors on a duplicate key, an array whose elements do not all have
    /// its element type, arrays nested deeper than [`MAX_ARRAY_DEPTH`], and a
    /// `general.alignment` that is not a non-zero power-of-two `u32` (a valid one sets the
    /// alignment, as [`set_alignment`](Self::set_alignment) does).
    pub fn add_metadata(&mut self, key: impl Into<String>, v: MetaValue) -> Result<(), GgufError> {
        let key = key.into();
        if self.keys.contains(&key) {
            return Err(GgufError::WriterDuplicateKey { key });
        }
        if let Err(reason) = check_value(&v, 0) {
            return Err(GgufError::WriterBadValue { key, reason });
        }
        if key == ALIGNMENT_KEY {
            match v {
                MetaValue::U32(a) if a != 0 && a.is_power_of_two() => self.alignment = a,
                MetaValue::U32(a) => return Err(GgufError::WriterBadAlignment { value: a }),
                ref other => {
                    return Err(GgufError::WriterBadValue {
                        key,
                        reason: format!("must be a u32, not {}", other.type_of()),
                    })
                }
            }
        }
        self.keys.insert(key.clone());
        self.metadata.push((key, v));
        Ok(())
    }

    /// Adds a tensor. `dims` are in ggml order (innermost first). Errors on a duplicate name, a
    /// shape or type the reader would reject, and data whose length is not exactly the
    /// tensor's size.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Cow<'a, [u8]>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(GgufError::WriterDuplicateTensor { tensor: name });
        }
        let (_, n_bytes) = tensor_size(Path::new("<writer>"), &name, dims, ty).map_err(|e| {
            GgufError::WriterBadTensor {
                tensor: name.clone(),
                reason: strip_writer_prefix(&e.to_string(), &name),
            }
        })?;
        if data.len() as u64 != n_bytes {
            return Err(GgufError::WriterBadTensor {
                reason: format!(
                    "{} bytes of data given, dims {dims:?} of {ty} take {n_bytes}",
                    data.len()
                ),
                tensor: name,
            });
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(())
    }

    /// Writes the whole file to `w`.
    pub fn write_to<W: Write>(&self, w: W) -> Result<(), GgufError> {
        self.write_inner(w, Path::new("<stream>"))
    }

    /// Writes the file to `path`: first to a temporary file beside it, then renamed over it, so
    /// that a reader never sees a half-written file.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| GgufError::Io {
                path: p,
                op,
                source,
            }
        };
        let tmp = temp_path(path);
        let result = (|| {
            let file = File::create(&tmp).map_err(io("create", &tmp))?;
            let mut bw = BufWriter::new(file);
            self.write_inner(&mut bw, &tmp)?;
            let file = bw
                .into_inner()
                .map_err(|e| io("write", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io("sync", &tmp))?;
            std::fs::rename(&tmp, path).map_err(io("rename", path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_inner<W: Write>(&self, w: W, path: &Path) -> Result<(), GgufError> {
        let align = self.alignment;
        if align == 0 || !align.is_power_of_two() {
            return Err(GgufError::WriterBadAlignment { value: align });
        }
        let align = u64::from(align);
        let extra_alignment = (align != u64::from(DEFAULT_ALIGNMENT)
            && !self.keys.contains(ALIGNMENT_KEY))
        .then(|| (ALIGNMENT_KEY.to_owned(), MetaValue::U32(self.alignment)));
        let metadata: Vec<&(String, MetaValue)> =
            self.metadata.iter().chain(extra_alignment.iter()).collect();

        let mut out = Counting {
            inner: w,
            written: 0,
            path,
        };
        out.put(&MAGIC)?;
        out.put(&3u32.to_le_bytes())?;
        out.put(&(self.tensors.len() as u64).to_le_bytes())?;
        out.put(&(metadata.len() as u64).to_le_bytes())?;
        for (k, v) in metadata {
            out.string(k)?;
            out.put(&v.type_of().id().to_le_bytes())?;
            out.value(v)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            out.string(&t.name)?;
            out.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                out.put(&d.to_le_bytes())?;
            }
            out.put(&t.ty.0.to_le_bytes())?;
            out.put(&offset.to_le_bytes())?;
            offset += (t.data.len() as u64).div_ceil(align) * align;
        }
        out.pad(align)?;
        for t in &self.tensors {
            out.put(&t.data)?;
            out.pad(align)?;
        }
        out.inner.flush().map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            op: "write",
            source,
        })
    }
}

/// Checks that every array element has its array's element type, and the nesting depth.
fn check_value(v: &MetaValue, depth: usize) -> Result<(), String> {
    if let MetaValue::Array(a) = v {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!(
                "arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
            ));
        }
        for (i, e) in a.values.iter().enumerate() {
            if e.type_of() != a.elem_type {
                return Err(format!(
                    "array element {i} is a {}, the array holds {}",
                    e.type_of(),
                    a.elem_type
                ));
            }
            check_value(e, depth + 1)?;
        }
    }
    Ok(())
}

/// Turns "<writer>: tensor `x`: reason" into "reason".
fn strip_writer_prefix(msg: &str, name: &str) -> String {
    let prefix = format!("<writer>: tensor `{name}`: ");
    msg.strip_prefix(&prefix).unwrap_or(msg).to_owned()
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.gguf".into());
    // Process id and a per-process counter: concurrent writers never share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// A writer that counts bytes (for padding) and turns I/O errors into [`GgufError::Io`].
struct Counting<'p, W> {
    inner: W,
    written: u64,
    path: &'p Path,
}

impl<W: Write> Counting<'_, W> {
    fn put(&mut self, b: &[u8]) -> Result<(), GgufError> {
        self.inner.write_all(b).map_err(|source| GgufError::Io {
            path: self.path.to_path_buf(),
            op: "write",
            source,
        })?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<(), GgufError> {
        let n = self.written.div_ceil(align) * align - self.written;
        const ZEROS: [u8; 256] = [0; 256];
        let mut left = n;
        while left > 0 {
            let k = left.min(ZEROS.len() as u64);
            self.put(&ZEROS[..k as usize])?;
            left -= k;
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), GgufError> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    /// Writes a value's payload (without its type id). Depth is bounded by `check_value`.
    fn value(&mut self, v: &MetaValue) -> Result<(), GgufError> {
        match v {
            MetaValue::U8(x) => self.put(&x.to_le_bytes()),
            MetaValue::I8(x) => self.put(&x.to_le_bytes()),
            MetaValue::U16(x) => self.put(&x.to_le_bytes()),
            MetaValue::I16(x) => self.put(&x.to_le_bytes()),
            MetaValue::U32(x) => self.put(&x.to_le_bytes()),
            MetaValue::I32(x) => self.put(&x.to_le_bytes()),
            MetaValue::F32(x) => self.put(&x.to_le_bytes()),
            MetaValue::Bool(x) => self.put(&[u8::from(*x)]),
            MetaValue::String(s) => self.string(s),
            MetaValue::U64(x) => self.put(&x.to_le_bytes()),
            MetaValue::I64(x) => self.put(&x.to_le_bytes()),
            MetaValue::F64(x) => self.put(&x.to_le_bytes()),
            MetaValue::Array(a) => {
                self.put(&a.elem_type.id().to_le_bytes())?;
                self.put(&(a.values.len() as u64).to_le_bytes())?;
                for e in &a.values {
                    self.value(e)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufFile, MetaArray, MetaType};

    fn write(w: &GgufWriter) -> Vec<u8> {
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn empty_file_layout() {
        let bytes = write(&GgufWriter::new());
        // magic, version 3, 0 tensors, 0 kv, padded to 32.
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(bytes[4..8], 3u32.to_le_bytes());
        assert_eq!(bytes[8..24], [0u8; 16]);
        assert_eq!(bytes.len(), 32);
        let f = GgufFile::from_bytes(bytes, "empty.gguf").unwrap();
        assert!(f.metadata().is_empty() && f.tensors().is_empty());
        assert_eq!(f.data_offset(), 32);
    }

    #[test]
    fn offsets_and_padding() {
        let mut w = GgufWriter::new();
        w.set_alignment(64);
        w.add_tensor("a", &[3], GgmlType::F32, Cow::Owned(vec![1; 12]))
            .unwrap();
        w.add_tensor("b", &[5], GgmlType::F16, Cow::Owned(vec![2; 10]))
            .unwrap();
        let bytes = write(&w);
        let f = GgufFile::from_bytes(bytes, "pad.gguf").unwrap();
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.get(ALIGNMENT_KEY), Some(&MetaValue::U32(64)));
        assert_eq!(f.tensor("a").unwrap().offset, 0);
        assert_eq!(f.tensor("b").unwrap().offset, 64);
        assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &[2; 10]);
        assert_eq!(f.file_len(), f.data_offset() + 128);
    }

    #[test]
    fn set_alignment_updates_an_explicit_key() {
        let mut w = GgufWriter::new();
        w.add_metadata(ALIGNMENT_KEY, MetaValue::U32(16)).unwrap();
        assert_eq!(w.alignment(), 16);
        w.set_alignment(128);
        let f = GgufFile::from_bytes(write(&w), "a.gguf").unwrap();
        assert_eq!(f.alignment(), 128);
        assert_eq!(f.metadata().len(), 1);
        // Alignment 32 written explicitly stays in the metadata.
        w.set_alignment(32);
        let f = GgufFile::from_bytes(write(&w), "a.gguf").unwrap();
        assert_eq!(f.get(ALIGNMENT_KEY), Some(&MetaValue::U32(32)));
    }

    #[test]
    fn writer_rejects_bad_input() {
        let mut w = GgufWriter::new();
        w.add_metadata("k", MetaValue::U8(1)).unwrap();
        assert!(matches!(
            w.add_metadata("k", MetaValue::U8(2)),
            Err(GgufError::WriterDuplicateKey { .. })
        ));
        let mixed = MetaValue::Array(MetaArray::new(
            MetaType::U8,
            vec![MetaValue::U8(1), MetaValue::I8(1)],
        ));
        let e = w.add_metadata("m", mixed).unwrap_err();
        assert!(matches!(e, GgufError::WriterBadValue { .. }), "{e}");
        assert!(e.to_string().contains("`m`"));
        assert!(matches!(
            w.add_metadata(ALIGNMENT_KEY, MetaValue::U32(3)),
            Err(GgufError::WriterBadAlignment { value: 3 })
        ));
        assert!(matches!(
            w.add_metadata(ALIGNMENT_KEY, MetaValue::U64(32)),
            Err(GgufError::WriterBadValue { .. })
        ));
        let e = w
            .add_tensor("t", &[255], GgmlType::Q4_K, Cow::Owned(vec![0; 144]))
            .unwrap_err();
        assert!(matches!(e, GgufError::WriterBadTensor { .. }), "{e}");
        assert!(e.to_string().contains("row length 255"), "{e}");
        let e = w
            .add_tensor("t", &[256], GgmlType::Q4_K, Cow::Owned(vec![0; 143]))
            .unwrap_err();
        assert!(e.to_string().contains("143 bytes"), "{e}");
        w.add_tensor("t", &[256], GgmlType::Q4_K, Cow::Owned(vec![0; 144]))
            .unwrap();
        assert!(matches!(
            w.add_tensor("t", &[256], GgmlType::Q4_K, Cow::Owned(vec![0; 144])),
            Err(GgufError::WriterDuplicateTensor { .. })
        ));
        w.set_alignment(0);
        assert!(matches!(
            w.write_to(Vec::new()),
            Err(GgufError::WriterBadAlignment { value: 0 })
        ));
    }

    #[test]
    fn too_deep_nesting_is_rejected() {
        let mut v = MetaValue::U8(0);
        for _ in 0..=MAX_ARRAY_DEPTH {
            v = MetaValue::Array(MetaArray::new(v.type_of(), vec![v]));
        }
        let mut w = GgufWriter::new();
        assert!(matches!(
            w.add_metadata("deep", v),
            Err(GgufError::WriterBadValue { .. })
        ));
    }

    #[test]
    fn write_file_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.gguf");
        std::fs::write(&path, b"old").unwrap();
        let mut w = GgufWriter::new();
        w.add_metadata("x", MetaValue::Bool(true)).unwrap();
        w.write_file(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.get("x"), Some(&MetaValue::Bool(true)));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A directory that does not exist gives an Io error naming the path.
        let e = w
            .write_file(dir.path().join("no/such/dir.gguf"))
            .unwrap_err();
        assert!(matches!(e, GgufError::Io { .. }), "{e}");
        assert!(e.to_string().contains("dir.gguf"), "{e}");
    }
}
