//! [`GgufWriter`]: builds a GGUF v3 file from metadata and tensors; [`GgufStreamWriter`]: writes
//! the same file with tensor data supplied one tensor at a time, for files larger than memory.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use quant_core::GgmlType;

use crate::cursor::MAX_ARRAY_DEPTH;
use crate::parse::{alignment_ok, DEFAULT_ALIGNMENT, MAGIC};
use crate::size::tensor_size;
use crate::{GgufError, MetaArray, MetaValue};

const ALIGNMENT_KEY: &str = "general.alignment";

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    /// Size of the data in bytes (before padding).
    n_bytes: u64,
    /// `None` for a tensor declared with [`GgufWriter::declare_tensor`].
    data: Option<Cow<'a, [u8]>>,
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
/// assert_eq!(&*f.tensor_data(&f.tensor("t").unwrap())?, &bytes[..]);
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
    /// explicitly, in which case that entry is updated). An alignment that is not a power of two from 1 to [`MAX_ALIGNMENT`](crate::MAX_ALIGNMENT) makes
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

    /// Adds a metadata pair. Errors on a key the reader refuses ([`key_problem`](crate::key_problem):
    /// empty, or holding a control character), a duplicate key, an array whose elements do not all have
    /// its element type, arrays nested deeper than [`MAX_ARRAY_DEPTH`], and a
    /// `general.alignment` that is not a `u32` power of two from 1 to 65 536 (a valid one sets the
    /// alignment, as [`set_alignment`](Self::set_alignment) does).
    pub fn add_metadata(&mut self, key: impl Into<String>, v: MetaValue) -> Result<(), GgufError> {
        let key = key.into();
        if let Some(reason) = crate::key_problem(&key) {
            return Err(GgufError::WriterBadValue { key, reason });
        }
        if self.keys.contains(&key) {
            return Err(GgufError::WriterDuplicateKey { key });
        }
        if let Err(reason) = check_value(&v, 0) {
            return Err(GgufError::WriterBadValue { key, reason });
        }
        if key == ALIGNMENT_KEY {
            match v {
                MetaValue::U32(a) if alignment_ok(a) => self.alignment = a,
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

    /// Adds a tensor. `dims` are in ggml order (innermost first). Errors on a name the reader
    /// refuses ([`tensor_name_problem`](crate::tensor_name_problem): over 63 bytes, or holding a
    /// control character), a duplicate name, a
    /// shape or type the reader would reject, and data whose length is not exactly the
    /// tensor's size.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Cow<'a, [u8]>,
    ) -> Result<(), GgufError> {
        self.push_tensor(name.into(), dims, ty, Some(data))
            .map(|_| ())
    }

    /// Declares a tensor by name, shape and type only, and returns its size in bytes. Its data
    /// is supplied later through a [`GgufStreamWriter`]; [`write_to`](Self::write_to) and
    /// [`write_file`](Self::write_file) refuse a writer holding declared tensors. Errors as
    /// [`add_tensor`](Self::add_tensor) does (except for the data length).
    pub fn declare_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<u64, GgufError> {
        self.push_tensor(name.into(), dims, ty, None)
    }

    fn push_tensor(
        &mut self,
        name: String,
        dims: &[u64],
        ty: GgmlType,
        data: Option<Cow<'a, [u8]>>,
    ) -> Result<u64, GgufError> {
        if let Some(reason) = crate::tensor_name_problem(&name) {
            return Err(GgufError::WriterBadTensor {
                tensor: name,
                reason,
            });
        }
        if self.names.contains(&name) {
            return Err(GgufError::WriterDuplicateTensor { tensor: name });
        }
        let index = self.tensors.len() as u64;
        let (_, n_bytes) =
            tensor_size(Path::new("<writer>"), &name, index, dims, ty).map_err(|e| {
                GgufError::WriterBadTensor {
                    tensor: name.clone(),
                    reason: strip_writer_prefix(&e.to_string(), index, &name),
                }
            })?;
        if let Some(data) = &data {
            if data.len() as u64 != n_bytes {
                return Err(GgufError::WriterBadTensor {
                    reason: format!(
                        "{} bytes of data given, dims {dims:?} of {ty} take {n_bytes}",
                        data.len()
                    ),
                    tensor: name,
                });
            }
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            n_bytes,
            data,
        });
        Ok(n_bytes)
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
        let mut datas = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            match &t.data {
                Some(d) => datas.push(d),
                None => {
                    return Err(GgufError::WriterBadTensor {
                        tensor: t.name.clone(),
                        reason: "declared without data; write it with a GgufStreamWriter".into(),
                    })
                }
            }
        }
        let mut out = Counting {
            inner: w,
            written: 0,
            path: path.to_path_buf(),
        };
        let align = self.write_header(&mut out)?;
        for d in datas {
            out.put(d)?;
            out.pad(align)?;
        }
        out.flush()
    }

    /// Writes everything up to the start of the first tensor's data (the padding after the
    /// tensor infos included), and returns the alignment.
    fn write_header<W: Write>(&self, out: &mut Counting<W>) -> Result<u64, GgufError> {
        let align = self.alignment;
        if !alignment_ok(align) {
            return Err(GgufError::WriterBadAlignment { value: align });
        }
        let align = u64::from(align);
        let extra_alignment = (align != u64::from(DEFAULT_ALIGNMENT)
            && !self.keys.contains(ALIGNMENT_KEY))
        .then(|| (ALIGNMENT_KEY.to_owned(), MetaValue::U32(self.alignment)));
        let metadata: Vec<&(String, MetaValue)> =
            self.metadata.iter().chain(extra_alignment.iter()).collect();

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
            offset += t.n_bytes.div_ceil(align) * align;
        }
        // The data section starts aligned; without tensors there is none, and nothing is
        // padded (an output never grows by more than its tensors need).
        if !self.tensors.is_empty() {
            out.pad(align)?;
        }
        Ok(align)
    }
}

/// Writes a GGUF v3 file whose tensor data is supplied one tensor at a time, in the order the
/// tensors were added to the [`GgufWriter`] that describes the file, so that no tensor needs to
/// be held in memory. The output is byte for byte what [`GgufWriter::write_to`] writes for the
/// same metadata and data. Padding after each tensor is written for the caller.
///
/// ```
/// # use std::io::Write;
/// # use quant_core::GgmlType;
/// # use quant_gguf::{GgufFile, GgufStreamWriter, GgufWriter};
/// let mut spec = GgufWriter::new();
/// spec.declare_tensor("t", &[8], GgmlType::F32)?;
/// let mut s = GgufStreamWriter::new(Vec::new(), &spec, "doc.gguf")?;
/// s.write_tensor(|w| w.write_all(&[0u8; 32]))?;
/// let f = GgufFile::from_bytes(s.finish()?, "doc.gguf")?;
/// assert_eq!(&*f.tensor_data(&f.tensor("t").unwrap())?, &[0u8; 32][..]);
/// # Ok::<(), quant_gguf::GgufError>(())
/// ```
pub struct GgufStreamWriter<W: Write> {
    out: Counting<W>,
    /// Name and size of each tensor, in file order.
    tensors: Vec<(String, u64)>,
    next: usize,
    align: u64,
}

impl<W: Write> GgufStreamWriter<W> {
    /// Writes the header that `spec` describes (metadata, tensor infos, padding) to `w` and
    /// returns a writer waiting for the first tensor's data. Tensors in `spec` may have been
    /// declared ([`GgufWriter::declare_tensor`]) or added with data; their data is not used
    /// either way: every tensor's bytes come through [`write_tensor`](Self::write_tensor).
    /// `path` names the output in errors.
    pub fn new(w: W, spec: &GgufWriter<'_>, path: impl Into<PathBuf>) -> Result<Self, GgufError> {
        let mut out = Counting {
            inner: w,
            written: 0,
            path: path.into(),
        };
        let align = spec.write_header(&mut out)?;
        Ok(GgufStreamWriter {
            out,
            tensors: spec
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.n_bytes))
                .collect(),
            next: 0,
            align,
        })
    }

    /// The name and size in bytes of the tensor whose data is expected next, `None` once all
    /// have been written.
    pub fn next_tensor(&self) -> Option<(&str, u64)> {
        self.tensors.get(self.next).map(|(n, b)| (n.as_str(), *b))
    }

    /// Writes the next tensor's data: `fill` must write exactly that tensor's size in bytes to
    /// the sink it is given (in as many calls as it likes). Then pads to the alignment. Errors
    /// when every tensor has already been written, when `fill` fails or writes another number
    /// of bytes (the error names the tensor; the output is then incomplete), and on I/O errors.
    pub fn write_tensor(
        &mut self,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), GgufError> {
        let Some((name, n_bytes)) = self.tensors.get(self.next) else {
            return Err(GgufError::WriterStream {
                reason: format!(
                    "tensor data written after all {} tensors",
                    self.tensors.len()
                ),
            });
        };
        let mut sink = LimitedSink {
            inner: &mut self.out.inner,
            written: 0,
            limit: *n_bytes,
        };
        let result = fill(&mut sink);
        let written = sink.written;
        self.out.written += written;
        if written != *n_bytes {
            return Err(GgufError::WriterBadTensor {
                tensor: name.clone(),
                reason: format!("{written} bytes of data streamed, it takes {n_bytes}"),
            });
        }
        result.map_err(|source| GgufError::Io {
            path: self.out.path.clone(),
            op: "write",
            source,
        })?;
        self.next += 1;
        self.out.pad(self.align)
    }

    /// Checks that every tensor's data was written, flushes, and returns the sink.
    pub fn finish(mut self) -> Result<W, GgufError> {
        if let Some((name, _)) = self.tensors.get(self.next) {
            return Err(GgufError::WriterStream {
                reason: format!(
                    "finished after {} of {} tensors; `{name}` has no data",
                    self.next,
                    self.tensors.len()
                ),
            });
        }
        self.out.flush()?;
        Ok(self.out.inner)
    }
}

/// The sink handed to [`GgufStreamWriter::write_tensor`]'s closure: counts bytes and refuses
/// any beyond the tensor's size (so that a wrong writer cannot shift later tensors silently).
struct LimitedSink<'w, W> {
    inner: &'w mut W,
    written: u64,
    limit: u64,
}

impl<W: Write> Write for LimitedSink<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.limit.saturating_sub(self.written) {
            // Count what was offered, so that the caller's error says how much it tried.
            self.written += buf.len() as u64;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more bytes than the tensor takes",
            ));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks that every array element has its array's element type, and the nesting depth.
fn check_value(v: &MetaValue, depth: usize) -> Result<(), String> {
    match v {
        MetaValue::Array(a) => check_array(a, depth),
        _ => Ok(()),
    }
}

fn check_array(a: &MetaArray, depth: usize) -> Result<(), String> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(format!(
            "arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
        ));
    }
    if let Some(inner) = a.arrays() {
        return inner.iter().try_for_each(|x| check_array(x, depth + 1));
    }
    // Only an array built from values of mixed types can hold a wrong one.
    for (i, e) in a.mixed().unwrap_or_default().iter().enumerate() {
        if e.type_of() != a.elem_type() {
            return Err(format!(
                "array element {i} is a {}, the array holds {}",
                e.type_of(),
                a.elem_type()
            ));
        }
        check_value(e, depth + 1)?;
    }
    Ok(())
}

/// Turns "<writer>: tensor #i `x`: reason" into "reason".
fn strip_writer_prefix(msg: &str, index: u64, name: &str) -> String {
    let prefix = format!("<writer>: tensor #{index} `{}`: ", crate::Escaped(name));
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
struct Counting<W> {
    inner: W,
    written: u64,
    path: PathBuf,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), GgufError> {
        self.inner.write_all(b).map_err(|source| GgufError::Io {
            path: self.path.clone(),
            op: "write",
            source,
        })?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GgufError> {
        self.inner.flush().map_err(|source| GgufError::Io {
            path: self.path.clone(),
            op: "write",
            source,
        })
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
            MetaValue::Array(a) => self.array(a),
        }
    }

    /// Writes an array's payload: element type, count, elements.
    fn array(&mut self, a: &MetaArray) -> Result<(), GgufError> {
        self.put(&a.elem_type().id().to_le_bytes())?;
        self.put(&(a.len() as u64).to_le_bytes())?;
        if let Some(inner) = a.arrays() {
            inner.iter().try_for_each(|x| self.array(x))
        } else if let Some(bytes) = a.as_u8s() {
            self.put(bytes)
        } else {
            a.iter().try_for_each(|e| self.value(&e))
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
        // magic, version 3, 0 tensors, 0 kv; no padding, as there is no data section.
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(bytes[4..8], 3u32.to_le_bytes());
        assert_eq!(bytes[8..24], [0u8; 16]);
        assert_eq!(bytes.len(), 24);
        let f = GgufFile::from_bytes(bytes, "empty.gguf").unwrap();
        assert!(f.metadata().is_empty() && f.tensor_count() == 0);
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
        assert_eq!(*f.tensor_data(&f.tensor("b").unwrap()).unwrap(), [2; 10]);
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

    /// A writer with metadata, an odd alignment and tensors of several types and sizes (one of
    /// them not a multiple of the alignment), plus its tensors' data.
    fn sample() -> (GgufWriter<'static>, GgufWriter<'static>, Vec<Vec<u8>>) {
        let tensors: [(&str, &[u64], GgmlType); 3] = [
            ("a", &[3], GgmlType::F32),
            ("b", &[256, 2], GgmlType::Q4_K),
            ("c", &[5], GgmlType::F16),
        ];
        let mut full = GgufWriter::new();
        let mut spec = GgufWriter::new();
        let mut datas = Vec::new();
        for w in [&mut full, &mut spec] {
            w.add_metadata("general.architecture", MetaValue::String("llama".into()))
                .unwrap();
            w.set_alignment(64);
        }
        for (i, (name, dims, ty)) in tensors.into_iter().enumerate() {
            let n = spec.declare_tensor(name, dims, ty).unwrap();
            let data = quant_core::random_bytes(n as usize, i as u64 + 1);
            full.add_tensor(name, dims, ty, Cow::Owned(data.clone()))
                .unwrap();
            datas.push(data);
        }
        (full, spec, datas)
    }

    #[test]
    fn stream_writer_matches_writer_byte_for_byte() {
        let (full, spec, datas) = sample();
        let expected = write(&full);
        let mut s = GgufStreamWriter::new(Vec::new(), &spec, "s.gguf").unwrap();
        for (i, d) in datas.iter().enumerate() {
            assert_eq!(s.next_tensor().unwrap().1, d.len() as u64);
            // Several writes of uneven sizes per tensor.
            s.write_tensor(|w| {
                for chunk in d.chunks(7) {
                    w.write_all(chunk)?;
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("tensor {i}: {e}"));
        }
        assert!(s.next_tensor().is_none());
        let got = s.finish().unwrap();
        assert_eq!(got, expected);
        // The full writer, given as spec, streams the same bytes too.
        let mut s = GgufStreamWriter::new(Vec::new(), &full, "s.gguf").unwrap();
        for d in &datas {
            s.write_tensor(|w| w.write_all(d)).unwrap();
        }
        assert_eq!(s.finish().unwrap(), expected);
    }

    #[test]
    fn stream_writer_checks_sizes_and_order() {
        let (_, spec, datas) = sample();
        // Too few bytes.
        let mut s = GgufStreamWriter::new(Vec::new(), &spec, "s.gguf").unwrap();
        let e = s.write_tensor(|w| w.write_all(&datas[0][1..])).unwrap_err();
        assert!(matches!(e, GgufError::WriterBadTensor { .. }), "{e}");
        assert!(
            e.to_string().contains("`a`") && e.to_string().contains("11 bytes"),
            "{e}"
        );
        // Too many bytes: refused, whatever the closure does with the error.
        let mut s = GgufStreamWriter::new(Vec::new(), &spec, "s.gguf").unwrap();
        let e = s
            .write_tensor(|w| {
                let _ = w.write_all(&[0; 13]);
                let _ = w.write_all(&[0; 13]);
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, GgufError::WriterBadTensor { .. }), "{e}");
        // The closure's own error is reported as I/O.
        let mut s = GgufStreamWriter::new(Vec::new(), &spec, "s.gguf").unwrap();
        let e = s
            .write_tensor(|w| {
                w.write_all(&datas[0])?;
                Err(io::Error::other("generator failed"))
            })
            .unwrap_err();
        assert!(matches!(e, GgufError::Io { .. }), "{e}");
        // Finishing early, and writing past the end.
        let mut s = GgufStreamWriter::new(Vec::new(), &spec, "s.gguf").unwrap();
        s.write_tensor(|w| w.write_all(&datas[0])).unwrap();
        let e = s.finish().unwrap_err();
        assert!(matches!(e, GgufError::WriterStream { .. }), "{e}");
        assert!(e.to_string().contains("`b`"), "{e}");
        let mut s = GgufStreamWriter::new(Vec::new(), &spec, "s.gguf").unwrap();
        for d in &datas {
            s.write_tensor(|w| w.write_all(d)).unwrap();
        }
        let e = s.write_tensor(|_| Ok(())).unwrap_err();
        assert!(matches!(e, GgufError::WriterStream { .. }), "{e}");
        // A declared tensor cannot go through the in-memory writer.
        let e = spec.write_to(Vec::new()).unwrap_err();
        assert!(e.to_string().contains("declared without data"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any tensor list, alignment and write pattern: streamed bytes equal `GgufWriter`'s.
        #[test]
        fn stream_writer_equals_writer(
            tensors in proptest::collection::vec((1u64..5, 1u64..40, 0usize..3), 0..6),
            align_log2 in 0u32..8,
            piece in 1usize..100,
        ) {
            let types = [GgmlType::F32, GgmlType::Q4_0, GgmlType::Q6_K];
            let mut full = GgufWriter::new();
            let mut spec = GgufWriter::new();
            full.set_alignment(1 << align_log2);
            spec.set_alignment(1 << align_log2);
            let mut datas = Vec::new();
            for (i, (rows, blocks, t)) in tensors.into_iter().enumerate() {
                let ty = types[t];
                let row = blocks * ty.geometry().unwrap().block_elems as u64;
                let name = format!("t{i}");
                let n = spec.declare_tensor(name.clone(), &[row, rows], ty).unwrap();
                let d = quant_core::random_bytes(n as usize, i as u64);
                full.add_tensor(name, &[row, rows], ty, Cow::Owned(d.clone())).unwrap();
                datas.push(d);
            }
            let mut s = GgufStreamWriter::new(Vec::new(), &spec, "p.gguf").unwrap();
            for d in &datas {
                s.write_tensor(|w| d.chunks(piece).try_for_each(|c| w.write_all(c)))
                    .unwrap();
            }
            proptest::prop_assert_eq!(s.finish().unwrap(), write(&full));
        }
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
