//! [`GgufFile`]: an opened, fully checked GGUF file, and its [`TensorInfo`]s.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use quant_core::GgmlType;

use crate::parse::parse_header;
use crate::{GgufError, MetaValue};

/// How [`GgufFile::open_with`] gets the file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Map the file (`true`, the default: zero-copy, pages loaded on demand) or read it whole
    /// into memory with ordinary reads (`false`: for files that may change while open; see the
    /// crate docs on `SIGBUS`).
    pub mmap: bool,
}

impl OpenOptions {
    /// The defaults: `mmap: true`.
    pub fn new() -> Self {
        OpenOptions { mmap: true }
    }
}

impl Default for OpenOptions {
    /// Same as [`OpenOptions::new`]: `mmap: true`.
    fn default() -> Self {
        Self::new()
    }
}

/// One tensor's description from the header, checked against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`"blk.0.attn_q.weight"`).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (row length). 1 to 4 of them, none
    /// zero.
    pub dims: Vec<u64>,
    /// Element type. Always a type with known block geometry.
    pub ty: GgmlType,
    /// Offset of the data, relative to the start of the data section; a multiple of the
    /// file's alignment.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Size of the data in bytes (whole blocks).
    pub n_bytes: u64,
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An opened GGUF v2/v3 file whose header has been read and fully checked.
///
/// Once a `GgufFile` exists, every [`TensorInfo`] it lists has a known type, whole blocks per
/// row, an aligned offset and data that lies wholly inside the file, so
/// [`tensor_data`](Self::tensor_data) never fails for them.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    alignment: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.file_len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and checks a file, mapping it into memory (zero-copy).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        Self::open_with(path, OpenOptions::new())
    }

    /// Opens and checks a file, mapped or read as `opts` says.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |op: &'static str| {
            move |source| GgufError::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let mut file = File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        let storage = if opts.mmap && len > 0 {
            // SAFETY: the mapping is read-only and lives as long as `self`. If another process
            // truncates the file while it is mapped, reading the lost pages raises SIGBUS; the
            // crate docs say so and offer `mmap: false` for such files.
            let map = unsafe { Mmap::map(&file) }.map_err(io("mmap"))?;
            Storage::Mapped(map)
        } else {
            // The length is only a hint: read_to_end grows the buffer with what is really there.
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io("read"))?;
            Storage::Owned(bytes)
        };
        Self::from_storage(storage, path.to_path_buf())
    }

    /// Checks a file held in memory. `name` stands for its path in errors and [`path`](Self::path).
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<GgufFile, GgufError> {
        Self::from_storage(Storage::Owned(bytes), name.into())
    }

    fn from_storage(storage: Storage, path: PathBuf) -> Result<GgufFile, GgufError> {
        let h = parse_header(storage.bytes(), &path)?;
        Ok(GgufFile {
            path,
            storage,
            version: h.version,
            alignment: h.alignment,
            metadata: h.metadata,
            meta_index: h.meta_index,
            tensors: h.tensors,
            tensor_index: h.tensor_index,
            data_offset: h.data_offset,
        })
    }

    /// The file's path (or the name given to [`from_bytes`](Self::from_bytes)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor offset: `general.alignment`, or 32.
    pub fn alignment(&self) -> u64 {
        self.alignment.into()
    }

    /// All metadata pairs, in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// The value of one metadata key.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's info, by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor's data: exactly `t.n_bytes` bytes of the mapping (or buffer), no copy.
    ///
    /// `t` should come from this file's [`tensors`](Self::tensors); for those the slice is
    /// always whole. For a `TensorInfo` made up elsewhere whose bytes do not lie inside this
    /// file, the result is an empty slice (never a panic).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|start| Some((start, start.checked_add(t.n_bytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range
            .and_then(|r| self.storage.bytes().get(r))
            .unwrap_or(&[])
    }

    /// Absolute offset of the data section: the header's end rounded up to the alignment.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Whether the file is memory-mapped (as opposed to read into memory).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufWriter, MetaValue};
    use std::borrow::Cow;

    fn small_file() -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.add_metadata("general.name", MetaValue::String("unit".into()))
            .unwrap();
        let data: Vec<u8> = (0..64u8).collect();
        w.add_tensor("a", &[16], GgmlType::F32, Cow::Owned(data))
            .unwrap();
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn gguf_file_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GgufFile>();
    }

    #[test]
    fn open_mapped_and_read_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.gguf");
        std::fs::write(&path, small_file()).unwrap();
        let mapped = GgufFile::open(&path).unwrap();
        let read = GgufFile::open_with(&path, OpenOptions { mmap: false }).unwrap();
        assert!(mapped.is_mapped());
        assert!(!read.is_mapped());
        assert_eq!(mapped.path(), path);
        for f in [&mapped, &read] {
            let t = f.tensor("a").unwrap();
            assert_eq!(f.tensor_data(t), (0..64u8).collect::<Vec<_>>());
            assert_eq!(f.get("general.name").unwrap().as_str(), Some("unit"));
            assert_eq!(f.version(), 3);
            assert_eq!(f.alignment(), 32);
            assert_eq!(f.data_offset() % 32, 0);
        }
        assert_eq!(mapped.metadata(), read.metadata());
        assert_eq!(mapped.tensors(), read.tensors());
    }

    #[test]
    fn default_options_map() {
        assert!(OpenOptions::default().mmap);
        assert_eq!(OpenOptions::default(), OpenOptions::new());
    }

    #[test]
    fn missing_and_empty_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.gguf");
        let e = GgufFile::open(&missing).unwrap_err();
        assert!(matches!(e, GgufError::Io { op: "open", .. }), "{e}");
        assert!(e.to_string().contains("missing.gguf"));
        let empty = dir.path().join("empty.gguf");
        std::fs::write(&empty, b"").unwrap();
        let e = GgufFile::open(&empty).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    }

    #[test]
    fn foreign_tensor_info_gives_empty_slice() {
        let f = GgufFile::from_bytes(small_file(), "mem.gguf").unwrap();
        let mut t = f.tensor("a").unwrap().clone();
        t.offset = u64::MAX - 3;
        assert!(f.tensor_data(&t).is_empty());
        t.offset = 0;
        t.n_bytes = 1 << 40;
        assert!(f.tensor_data(&t).is_empty());
    }
}
