//! [`GgufFile`]: an opened, fully checked GGUF file, and its [`TensorInfo`]s.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use quant_core::GgmlType;

use crate::parse::{bytes_wanted, parse_header, parse_header_in_memory, Header};
use crate::size::tensor_span;
use crate::table::{TensorNames, TensorTable, Tensors};
use crate::{GgufError, MetaValue};

/// Bytes an unmapped open reads first to parse the header; it grows the prefix while the
/// header runs past it.
pub(crate) const FIRST_PREFIX: u64 = 1 << 20;

/// How [`GgufFile::open_with`] gets the file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Map the file (`true`, the default: zero-copy, pages loaded on demand) or read it with
    /// ordinary positioned reads (`false`: for files that may change while open; see the crate
    /// docs on `SIGBUS`).
    ///
    /// Unmapped, the open reads only the header: a prefix of 1 MiB (or the whole file if
    /// smaller), grown until the header fits in it. Once parsed, the prefix is cut down in
    /// place to the header's tensor infos, which the [`GgufFile`] keeps (its tensor table);
    /// it keeps the file open and reads tensor bytes on demand ([`GgufFile::tensor_data`],
    /// [`GgufFile::read_tensor_at`]), so it holds no tensor data in memory
    /// ([`GgufFile::resident_bytes`] is the tensor infos' bytes).
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
///
/// A value built when asked for ([`GgufFile::tensors`], [`GgufFile::tensor`],
/// [`GgufFile::tensor_at`]) from the compact table the file keeps, so holding one does not
/// borrow the file.
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
    /// The file, mapped.
    Mapped(Mmap),
    /// The whole file in memory ([`GgufFile::from_bytes`]).
    Owned(Vec<u8>),
    /// The file, open, read on demand with positioned reads, and a copy of its header's tensor
    /// infos (the bytes the tensor table reads).
    Unmapped { file: File, infos: Box<[u8]> },
}

/// An opened GGUF v2/v3 file whose header has been read and fully checked.
///
/// Once a `GgufFile` exists, every [`TensorInfo`] it lists has a known type, whole blocks per
/// row, an aligned offset and data that lies wholly inside the file (as long as it was when
/// opened), so [`tensor_data`](Self::tensor_data) fails for them only if reading an unmapped
/// file fails.
///
/// The tensor infos are kept compactly: the header's bytes for them (in the mapping, the
/// buffer, or for an unmapped file a copy of just those bytes) and 8 bytes per tensor, about
/// the header's size in all; [`TensorInfo`]s are built from them when asked for.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    file_len: u64,
    version: u32,
    alignment: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: TensorTable,
    /// Where the tensor infos lie in the mapping or buffer (`0..len` of an unmapped file's copy).
    infos: Range<usize>,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let storage = match self.storage {
            Storage::Mapped(_) => "mapped",
            Storage::Owned(_) => "in memory",
            Storage::Unmapped { .. } => "unmapped",
        };
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("storage", &storage)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.file_len)
            .finish()
    }
}

impl GgufFile {
    /// Opens and checks a file, mapping it into memory (zero-copy).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        Self::open_with(path, OpenOptions::new())
    }

    /// Opens and checks a file, mapped or read as `opts` says (see [`OpenOptions::mmap`]).
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |op: &'static str| {
            move |source| GgufError::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let file = File::open(path).map_err(io("open"))?;
        let meta = file.metadata().map_err(io("stat"))?;
        // Mapping a directory says "No such device", reading one "Is a directory" only later.
        if meta.is_dir() {
            return Err(io("open")(io::Error::other(
                "is a directory, not a GGUF file",
            )));
        }
        let len = meta.len();
        if opts.mmap && len > 0 {
            // SAFETY: the mapping is read-only and lives as long as `self`. If another process
            // truncates the file while it is mapped, reading the lost pages raises SIGBUS; the
            // crate docs say so and offer `mmap: false` for such files.
            let map = unsafe { Mmap::map(&file) }.map_err(io("mmap"))?;
            let h = parse_header_in_memory(&map, path)?;
            let file_len = map.len() as u64;
            Ok(Self::from_header(h, Storage::Mapped(map), file_len, path))
        } else {
            Self::open_unmapped(file, len, path, FIRST_PREFIX)
        }
    }

    /// The unmapped open: parses the header from a prefix of `first_prefix` bytes (or the whole
    /// file if smaller), growing it while the parse runs into its end, up to the whole file: to
    /// at least the bytes the failed parse says it lacks, and by half at least, so a header
    /// of `H` bytes is read from a prefix of at most about `1.5 × H` (or the file). The last
    /// attempt sees the whole file, so it gives exactly the error an in-memory parse gives;
    /// nothing is read or allocated beyond the file's length. Once parsed, the prefix is cut
    /// down in place to the header's tensor infos, which the file keeps.
    pub(crate) fn open_unmapped(
        file: File,
        file_len: u64,
        path: &Path,
        first_prefix: u64,
    ) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            op: "read",
            source,
        };
        // usize::MAX bounds the prefix on 32-bit targets; a header that does not fit there
        // fails with the parse error of the largest prefix that does.
        let cap = file_len.min(usize::MAX as u64);
        // At least the magic, so that a bad one is reported as it is in the whole file.
        let mut want = first_prefix.max(crate::MAGIC.len() as u64).min(cap);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            // want <= cap <= usize::MAX: the casts are exact.
            let have = buf.len();
            let grow = want as usize - have;
            buf.try_reserve_exact(grow)
                .map_err(|_| io(io::Error::from(io::ErrorKind::OutOfMemory)))?;
            buf.resize(want as usize, 0);
            read_exact_at(&file, &mut buf[have..], have as u64).map_err(|e| io(eof_hint(e)))?;
            match parse_header(&buf, file_len, path) {
                Ok(h) => {
                    let infos = keep_only(buf, &h.infos);
                    let storage = Storage::Unmapped { file, infos };
                    return Ok(Self::from_header(h, storage, file_len, path));
                }
                Err(e) if want < cap => match bytes_wanted(&e, want) {
                    Some(need) => want = need.max(want.saturating_add(want / 2)).min(cap),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks a file held in memory. `name` stands for its path in errors and [`path`](Self::path).
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<GgufFile, GgufError> {
        let path = name.into();
        let h = parse_header_in_memory(&bytes, &path)?;
        let file_len = bytes.len() as u64;
        Ok(Self::from_header(h, Storage::Owned(bytes), file_len, &path))
    }

    fn from_header(h: Header, storage: Storage, file_len: u64, path: &Path) -> GgufFile {
        let infos = match &storage {
            Storage::Unmapped { infos, .. } => 0..infos.len(),
            // The section lies inside the mapping or buffer, whose length is a usize.
            Storage::Mapped(_) | Storage::Owned(_) => h.infos.start as usize..h.infos.end as usize,
        };
        GgufFile {
            path: path.to_path_buf(),
            storage,
            file_len,
            version: h.version,
            alignment: h.alignment,
            metadata: h.metadata,
            meta_index: h.meta_index,
            tensors: h.tensors,
            infos,
            data_offset: h.data_offset,
        }
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

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// All tensor infos, in file order: an [`ExactSizeIterator`] that builds each
    /// [`TensorInfo`] as it reaches it. Collect it for a list to index or hold on to.
    pub fn tensors(&self) -> Tensors<'_> {
        self.tensors.iter(self.info_bytes())
    }

    /// The names of all tensors, in file order, borrowed from the header: nothing is
    /// allocated.
    pub fn tensor_names(&self) -> TensorNames<'_> {
        self.tensors.names(self.info_bytes())
    }

    /// One tensor's info, by name (a binary search over the names).
    pub fn tensor(&self, name: &str) -> Option<TensorInfo> {
        let i = self.tensors.find(self.info_bytes(), name)?;
        self.tensor_at(i)
    }

    /// The info of the `index`th tensor in file order, from 0.
    pub fn tensor_at(&self, index: usize) -> Option<TensorInfo> {
        let e = self.tensors.entry(self.info_bytes(), index)?;
        Some(e.to_info())
    }

    /// The header's tensor infos, as the table reads them.
    fn info_bytes(&self) -> &[u8] {
        let bytes: &[u8] = match &self.storage {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
            Storage::Unmapped { infos, .. } => infos,
        };
        bytes.get(self.infos.clone()).unwrap_or_default()
    }

    /// A tensor's data: exactly `t.n_bytes` bytes.
    ///
    /// Borrowed from the mapping (or the [`from_bytes`](Self::from_bytes) buffer), no copy; for
    /// an unmapped file, owned: one positioned read of the tensor's bytes into a new buffer of
    /// `t.n_bytes` (at most the file's size, which the header check bounds it by).
    ///
    /// `t` should come from this file's [`tensors`](Self::tensors). A `TensorInfo` made up
    /// elsewhere whose bytes do not lie inside this file gives
    /// [`GgufError::TensorBeyondFile`] or [`GgufError::TensorDataTruncated`]; a failed read
    /// (an unmapped file that shrank after it was opened, an I/O error) gives
    /// [`GgufError::TensorRead`], naming the file and the tensor. Never a panic.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError> {
        let start = self.span(t)?;
        match &self.storage {
            Storage::Mapped(m) => Ok(Cow::Borrowed(self.slice(m, t, start, t.n_bytes)?)),
            Storage::Owned(v) => Ok(Cow::Borrowed(self.slice(v, t, start, t.n_bytes)?)),
            Storage::Unmapped { file: f, .. } => {
                let err = |source| self.read_err(t, start, t.n_bytes, source);
                let n = usize::try_from(t.n_bytes).map_err(|_| {
                    err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        "the tensor does not fit this machine's address space",
                    ))
                })?;
                let mut v = Vec::new();
                v.try_reserve_exact(n)
                    .map_err(|_| err(io::Error::from(io::ErrorKind::OutOfMemory)))?;
                v.resize(n, 0);
                read_exact_at(f, &mut v, start).map_err(|e| err(eof_hint(e)))?;
                Ok(Cow::Owned(v))
            }
        }
    }

    /// Fills `dst` with the tensor's bytes from `offset` (relative to the tensor's first byte)
    /// to `offset + dst.len()`, for callers that fill their own buffers (the loader's staging
    /// slots): a copy out of the mapping or buffer, or one positioned read of an unmapped file
    /// (no allocation either way).
    ///
    /// A range that does not lie inside the tensor, or a failed read (an unmapped file that
    /// shrank after it was opened, an I/O error), gives [`GgufError::TensorRead`]; a
    /// `TensorInfo` whose bytes do not lie inside this file gives the errors of
    /// [`tensor_data`](Self::tensor_data). Never a panic.
    pub fn read_tensor_at(
        &self,
        t: &TensorInfo,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), GgufError> {
        let start = self.span(t)?;
        let len = dst.len() as u64;
        let at = start.saturating_add(offset);
        if !matches!(offset.checked_add(len), Some(end) if end <= t.n_bytes) {
            return Err(self.read_err(
                t,
                at,
                len,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "bytes {offset}..{} lie outside the tensor's {} bytes",
                        offset.saturating_add(len),
                        t.n_bytes
                    ),
                ),
            ));
        }
        match &self.storage {
            Storage::Mapped(m) => dst.copy_from_slice(self.slice(m, t, at, len)?),
            Storage::Owned(v) => dst.copy_from_slice(self.slice(v, t, at, len)?),
            Storage::Unmapped { file: f, .. } => {
                read_exact_at(f, dst, at).map_err(|e| self.read_err(t, at, len, eof_hint(e)))?
            }
        }
        Ok(())
    }

    /// The absolute start of `t`'s data, after checking that it lies inside the file.
    fn span(&self, t: &TensorInfo) -> Result<u64, GgufError> {
        let span = (t.offset, t.n_bytes);
        tensor_span(&self.path, &t.name, span, self.data_offset, self.file_len)
    }

    /// `len` bytes of `bytes` (the whole file) from `start`, or an error for `t`.
    fn slice<'b>(
        &self,
        bytes: &'b [u8],
        t: &TensorInfo,
        start: u64,
        len: u64,
    ) -> Result<&'b [u8], GgufError> {
        let range = usize::try_from(start)
            .ok()
            .and_then(|s| Some(s..s.checked_add(usize::try_from(len).ok()?)?));
        range.and_then(|r| bytes.get(r)).ok_or_else(|| {
            self.read_err(
                t,
                start,
                len,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the range lies outside the file",
                ),
            )
        })
    }

    fn read_err(&self, t: &TensorInfo, offset: u64, len: u64, source: io::Error) -> GgufError {
        GgufError::TensorRead {
            path: self.path.clone(),
            tensor: t.name.clone(),
            offset,
            len,
            source,
        }
    }

    /// Absolute offset of the data section: the header's end rounded up to the alignment.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Length of the file in bytes, as it was when opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Whether the file is memory-mapped (as opposed to read into memory by
    /// [`from_bytes`](Self::from_bytes) or read on demand, unmapped).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }

    /// Bytes of the file's contents that this `GgufFile` holds in its own memory: the whole
    /// buffer for [`from_bytes`](Self::from_bytes); 0 for a mapped file (its pages belong to
    /// the page cache); for an unmapped one the header's tensor infos, which its tensor table
    /// reads (the rest of the header prefix is let go once parsed, and tensor bytes are read
    /// on demand). The parsed metadata and the table's own 8 bytes per tensor are not
    /// counted.
    pub fn resident_bytes(&self) -> u64 {
        match &self.storage {
            Storage::Owned(v) => v.len() as u64,
            Storage::Unmapped { infos, .. } => infos.len() as u64,
            Storage::Mapped(_) => 0,
        }
    }
}

/// The bytes of `range` in `buf`, moved to its start, the rest let go: the allocation shrinks
/// in place, so the header is never held twice.
fn keep_only(mut buf: Vec<u8>, range: &Range<u64>) -> Box<[u8]> {
    // The range lies inside `buf`; the clamps only keep this free of panics.
    let end = usize::try_from(range.end).map_or(buf.len(), |e| e.min(buf.len()));
    let start = usize::try_from(range.start).map_or(end, |s| s.min(end));
    buf.copy_within(start..end, 0);
    buf.truncate(end - start);
    buf.into_boxed_slice()
}

/// Gives "failed to fill whole buffer" a cause a reader can act on.
fn eof_hint(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file ended early: it is shorter than when it was opened",
        )
    } else {
        e
    }
}

/// Fills `buf` from `file` at absolute offset `at`, without moving a shared cursor (safe from
/// several threads at once).
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

/// Fills `buf` from `file` at absolute offset `at` (`seek_read` takes the offset with each
/// call, so threads do not disturb each other's reads).
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, at) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                buf = &mut std::mem::take(&mut buf)[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Positioned reads are not implemented here: unmapped opens fail with an I/O error.
#[cfg(not(any(unix, windows)))]
fn read_exact_at(_file: &File, _buf: &mut [u8], _at: u64) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positioned reads are not supported on this platform; open the file mapped",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufWriter, MetaArray, MetaValue};
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

    fn unmapped(path: &Path) -> GgufFile {
        GgufFile::open_with(path, OpenOptions { mmap: false }).unwrap()
    }

    /// Opens `path` unmapped, starting from a prefix of `first` bytes.
    fn open_prefix(path: &Path, first: u64) -> Result<GgufFile, GgufError> {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        GgufFile::open_unmapped(file, len, path, first)
    }

    /// The bytes of `f`'s tensor infos as GGUF encodes them.
    fn info_bytes(f: &GgufFile) -> u64 {
        let one = |t: TensorInfo| 8 + t.name.len() as u64 + 4 + 8 * t.dims.len() as u64 + 12;
        f.tensors().map(one).sum()
    }

    fn golden(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data")
            .join(name)
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
        let read = unmapped(&path);
        assert!(mapped.is_mapped());
        assert!(!read.is_mapped());
        assert_eq!(mapped.path(), path);
        for f in [&mapped, &read] {
            let t = f.tensor("a").unwrap();
            assert_eq!(*f.tensor_data(&t).unwrap(), (0..64u8).collect::<Vec<_>>());
            assert_eq!(f.get("general.name").unwrap().as_str(), Some("unit"));
            assert_eq!(f.version(), 3);
            assert_eq!(f.alignment(), 32);
            assert_eq!(f.data_offset() % 32, 0);
        }
        assert!(matches!(
            mapped.tensor_data(&mapped.tensor("a").unwrap()).unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            read.tensor_data(&read.tensor("a").unwrap()).unwrap(),
            Cow::Owned(_)
        ));
        assert_eq!(mapped.metadata(), read.metadata());
        assert_eq!(
            mapped.tensors().collect::<Vec<_>>(),
            read.tensors().collect::<Vec<_>>()
        );
        assert_eq!(mapped.file_len(), read.file_len());
    }

    /// Every golden file reads the same mapped, unmapped and from memory: metadata, tensor
    /// infos, whole tensors and pieces of them.
    #[test]
    fn golden_files_agree_in_every_mode() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.extension().is_some_and(|x| x == "gguf") {
                continue;
            }
            n += 1;
            let mapped = GgufFile::open(&path).unwrap();
            let read = unmapped(&path);
            let mem = GgufFile::from_bytes(std::fs::read(&path).unwrap(), &path).unwrap();
            assert_eq!(read.resident_bytes(), info_bytes(&mapped));
            assert!(read.resident_bytes() < read.data_offset());
            assert_eq!(mapped.resident_bytes(), 0);
            assert_eq!(mem.resident_bytes(), mem.file_len());
            for f in [&read, &mem] {
                assert_eq!(f.version(), mapped.version());
                assert_eq!(f.alignment(), mapped.alignment());
                assert_eq!(f.data_offset(), mapped.data_offset());
                assert_eq!(f.file_len(), mapped.file_len());
                assert_eq!(f.metadata(), mapped.metadata());
                assert_eq!(
                    f.tensors().collect::<Vec<_>>(),
                    mapped.tensors().collect::<Vec<_>>()
                );
                for t in mapped.tensors() {
                    let want = mapped.tensor_data(&t).unwrap();
                    assert_eq!(want.len() as u64, t.n_bytes);
                    assert_eq!(f.tensor_data(&t).unwrap(), want, "{}", t.name);
                    // The middle third, through read_tensor_at.
                    let (a, b) = (t.n_bytes / 3, 2 * t.n_bytes / 3);
                    let mut piece = vec![0u8; (b - a) as usize];
                    f.read_tensor_at(&t, a, &mut piece).unwrap();
                    assert_eq!(piece, want[a as usize..b as usize], "{}", t.name);
                }
            }
        }
        assert!(n >= 6, "golden files missing");
    }

    #[test]
    fn unmapped_open_holds_only_the_tensor_infos() {
        // 8 MiB of tensor data behind a header of a few hundred bytes.
        let mut w = GgufWriter::new();
        w.add_tensor(
            "big",
            &[2 << 20],
            GgmlType::F32,
            Cow::Owned(vec![7; 8 << 20]),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.gguf");
        w.write_file(&path).unwrap();
        let f = unmapped(&path);
        // The one tensor info: name (8 + 3), n_dims (4), one dim (8), type (4), offset (8).
        assert_eq!(f.resident_bytes(), 35);
        assert!(f.file_len() > 8 << 20);
        let t = f.tensor("big").unwrap();
        let mut tail = [0u8; 16];
        f.read_tensor_at(&t, t.n_bytes - 16, &mut tail).unwrap();
        assert_eq!(tail, [7; 16]);
        assert_eq!(f.resident_bytes(), 35);
        let from_memory = GgufFile::from_bytes(std::fs::read(&path).unwrap(), "m").unwrap();
        assert_eq!(from_memory.resident_bytes(), f.file_len());
    }

    #[test]
    fn header_larger_than_the_first_prefix_parses() {
        // A 3 MiB metadata array: the header needs the 1, 2 and 4 MiB (whole file) prefixes.
        let values: Vec<u8> = (0..3u32 << 20).map(|i| i as u8).collect();
        let big = MetaValue::Array(MetaArray::from(values));
        // And a string longer than the first prefix, after it.
        let long = MetaValue::String("x".repeat(3 << 19));
        let mut w = GgufWriter::new();
        w.add_metadata("big", big.clone()).unwrap();
        w.add_metadata("long", long.clone()).unwrap();
        w.add_tensor("t", &[8], GgmlType::F32, Cow::Owned(vec![9; 32]))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big-header.gguf");
        w.write_file(&path).unwrap();
        let f = unmapped(&path);
        assert!(f.data_offset() > 2 * FIRST_PREFIX);
        assert_eq!(f.get("big"), Some(&big));
        assert_eq!(f.get("long"), Some(&long));
        let t = f.tensor("t").unwrap();
        assert_eq!(*f.tensor_data(&t).unwrap(), [9; 32]);
        let mapped = GgufFile::open(&path).unwrap();
        assert_eq!(
            f.tensors().collect::<Vec<_>>(),
            mapped.tensors().collect::<Vec<_>>()
        );
        // From tiny prefixes too.
        for first in [1, 4, 5, 100, 4096] {
            let g = open_prefix(&path, first).unwrap();
            assert_eq!(g.metadata(), f.metadata());
            assert_eq!(
                g.tensors().collect::<Vec<_>>(),
                f.tensors().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn truncated_after_opening_is_an_error_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrinks.gguf");
        std::fs::write(&path, small_file()).unwrap();
        let f = unmapped(&path);
        let t = f.tensor("a").unwrap().clone();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(f.data_offset() + 10)
            .unwrap();
        let e = f.tensor_data(&t).unwrap_err();
        assert!(matches!(e, GgufError::TensorRead { .. }), "{e}");
        assert_eq!(e.path(), Some(path.as_path()));
        let msg = e.to_string();
        assert!(msg.contains("shrinks.gguf") && msg.contains("`a`"), "{msg}");
        assert!(msg.contains("shorter than when it was opened"), "{msg}");
        let mut dst = [0u8; 16];
        let e = f.read_tensor_at(&t, 8, &mut dst).unwrap_err();
        assert!(
            matches!(&e, GgufError::TensorRead { offset, len: 16, .. } if *offset == f.data_offset() + 8),
            "{e}"
        );
        // What is still there still reads.
        f.read_tensor_at(&t, 0, &mut dst[..10]).unwrap();
        assert_eq!(dst[..10], (0..10u8).collect::<Vec<_>>());
    }

    #[test]
    fn read_tensor_at_checks_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.gguf");
        std::fs::write(&path, small_file()).unwrap();
        let mem = GgufFile::from_bytes(small_file(), "mem.gguf").unwrap();
        for f in [&mem, &GgufFile::open(&path).unwrap(), &unmapped(&path)] {
            let t = f.tensor("a").unwrap();
            let mut dst = [0u8; 8];
            f.read_tensor_at(&t, 56, &mut dst).unwrap();
            assert_eq!(dst, [56, 57, 58, 59, 60, 61, 62, 63]);
            f.read_tensor_at(&t, 64, &mut []).unwrap();
            for offset in [57, 64, u64::MAX - 3] {
                let e = f.read_tensor_at(&t, offset, &mut dst).unwrap_err();
                assert!(matches!(e, GgufError::TensorRead { .. }), "{e}");
                assert!(e.to_string().contains("outside the tensor"), "{e}");
            }
        }
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
        for mmap in [true, false] {
            let e = GgufFile::open_with(&missing, OpenOptions { mmap }).unwrap_err();
            assert!(matches!(e, GgufError::Io { op: "open", .. }), "{e}");
            assert!(e.to_string().contains("missing.gguf"));
        }
        let empty = dir.path().join("empty.gguf");
        std::fs::write(&empty, b"").unwrap();
        for mmap in [true, false] {
            let e = GgufFile::open_with(&empty, OpenOptions { mmap }).unwrap_err();
            assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
        }
    }

    #[test]
    fn foreign_tensor_info_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foreign.gguf");
        std::fs::write(&path, small_file()).unwrap();
        let mem = GgufFile::from_bytes(small_file(), "mem.gguf").unwrap();
        for f in [&mem, &GgufFile::open(&path).unwrap(), &unmapped(&path)] {
            let mut t = f.tensor("a").unwrap().clone();
            t.offset = u64::MAX - 3;
            let e = f.tensor_data(&t).unwrap_err();
            assert!(matches!(e, GgufError::TensorBeyondFile { .. }), "{e}");
            assert!(f.read_tensor_at(&t, 0, &mut [0; 4]).is_err());
            t.offset = 0;
            t.n_bytes = 1 << 40;
            let e = f.tensor_data(&t).unwrap_err();
            assert!(matches!(e, GgufError::TensorDataTruncated { .. }), "{e}");
            assert!(e.to_string().contains("`a`"), "{e}");
            assert!(f.read_tensor_at(&t, 0, &mut [0; 4]).is_err());
        }
    }

    mod prefixes {
        use super::*;
        use proptest::prelude::*;

        fn all_types() -> &'static [u8] {
            static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            BYTES.get_or_init(|| std::fs::read(golden("all-types.gguf")).unwrap())
        }

        proptest! {
                    #![proptest_config(ProptestConfig::with_cases(256))]

                    /// Corrupted headers opened unmapped from prefixes of any size give exactly what
                    /// the in-memory parse of the whole file gives: the same header, or the same error
                    /// (same message, whatever prefix it was first met in).
                    #[test]
                    fn any_prefix_gives_the_whole_file_result(
                        edits in prop::collection::vec((0usize..2496, any::<u8>()), 0..8),
                        first in 1u64..3000,
                        cut in prop::option::of(0usize..44032),
                    ) {
                        let mut bytes = all_types().to_vec();
                        for (at, b) in edits {
                            bytes[at] = b;
                        }
                        if let Some(cut) = cut {
                            bytes.truncate(cut);
                        }
                        let dir = tempfile::tempdir().unwrap();
                        let path = dir.path().join("p.gguf");
                        std::fs::write(&path, &bytes).unwrap();
                        let whole = GgufFile::from_bytes(bytes, &path);
                        let streamed = open_prefix(&path, first);
                        match (whole, streamed) {
                            (Ok(w), Ok(s)) => {
                                prop_assert_eq!(w.metadata(), s.metadata());
                                prop_assert_eq!(
        w.tensors().collect::<Vec<_>>(),
        s.tensors().collect::<Vec<_>>()
        );
                                prop_assert_eq!(w.data_offset(), s.data_offset());
                                for t in w.tensors() {
                                    prop_assert_eq!(w.tensor_data(&t).unwrap(), s.tensor_data(&t).unwrap());
                                }
                            }
                            (Err(w), Err(s)) => prop_assert_eq!(w.to_string(), s.to_string()),
                            (w, s) => prop_assert!(false, "whole: {w:?}, streamed: {s:?}"),
                        }
                    }
                }
    }
}
