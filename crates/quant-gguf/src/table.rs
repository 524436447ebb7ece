//! The tensor table of a checked header: the tensor infos kept as the file has them, the parse
//! and checks that build it, and the iterators [`Tensors`] and [`TensorNames`] over it.
//!
//! A tensor info is about 40 bytes in a file. Parsed into a [`TensorInfo`] (a `String`, a
//! `Vec`, and their allocations) it would cost several times that, and an index by name as
//! much again; a file of a million tiny tensors would open at ten times its header. So the
//! table keeps the infos' bytes (the header's tensor-info section, held by the
//! [`GgufFile`](crate::GgufFile)) and only 8 bytes per tensor of its own: where each info
//! starts, and the tensors' order by name for lookups. A [`TensorInfo`] is built when asked for.

use std::iter::FusedIterator;
use std::path::Path;

use quant_core::GgmlType;

use crate::cursor::Cursor;
use crate::size::{tensor_size, tensor_span, MAX_DIMS};
use crate::{GgufError, TensorInfo};

type Result<T> = std::result::Result<T, GgufError>;

/// The tensor infos of a checked header: where each starts in the header's tensor-info section
/// (whose bytes the [`GgufFile`](crate::GgufFile) holds), and their order by name.
///
/// Positions are `u32`: the parse refuses a header whose tensor infos take more than 4 GiB
/// ([`GgufError::TensorInfosTooLarge`]; that is over 100 million tensors).
#[derive(Debug, Default)]
pub(crate) struct TensorTable {
    /// Where each tensor's info starts in the section, in file order.
    starts: Vec<u32>,
    /// Tensor indices in the byte order of their names, which are unique.
    by_name: Vec<u32>,
}

/// One tensor info as the section holds it, its name borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    dims: [u64; MAX_DIMS],
    n_dims: usize,
    pub ty: GgmlType,
    pub offset: u64,
}

impl Entry<'_> {
    /// The dimensions, innermost first.
    pub fn dims(&self) -> &[u64] {
        &self.dims[..self.n_dims]
    }

    /// Element and byte counts, derived as the parse checked them. Bytes that no longer check
    /// (only a mapped file rewritten underneath can give them) count as `(0, 0)`.
    pub fn sizes(&self) -> (u64, u64) {
        tensor_size(Path::new(""), "", 0, self.dims(), self.ty).unwrap_or_default()
    }

    /// The owned [`TensorInfo`].
    pub fn to_info(self) -> TensorInfo {
        let (n_elements, n_bytes) = self.sizes();
        TensorInfo {
            name: self.name.to_owned(),
            dims: self.dims().to_vec(),
            ty: self.ty,
            offset: self.offset,
            n_elements,
            n_bytes,
        }
    }
}

/// Little-endian fields of a checked tensor info. Past the end of its bytes it gives zeros and
/// empty slices rather than panicking: the bytes of a mapped file rewritten underneath need not
/// check any more.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The fields of the info starting at `start` in `section`.
    fn at(section: &'a [u8], start: u32) -> Self {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        Fields(section.get(start..).unwrap_or_default())
    }

    fn take(&mut self, n: u64) -> &'a [u8] {
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u32(&mut self) -> u32 {
        self.take(4).try_into().map_or(0, u32::from_le_bytes)
    }

    fn u64(&mut self) -> u64 {
        self.take(8).try_into().map_or(0, u64::from_le_bytes)
    }

    fn name(&mut self) -> &'a [u8] {
        let len = self.u64();
        self.take(len)
    }

    /// The whole info.
    fn entry(mut self) -> Entry<'a> {
        let name = std::str::from_utf8(self.name()).unwrap_or_default();
        let n_dims = usize::try_from(self.u32()).map_or(MAX_DIMS, |n| n.min(MAX_DIMS));
        let mut dims = [0; MAX_DIMS];
        for d in &mut dims[..n_dims] {
            *d = self.u64();
        }
        Entry {
            name,
            dims,
            n_dims,
            ty: GgmlType(self.u32()),
            offset: self.u64(),
        }
    }

    /// The data offset alone, skipping the rest.
    fn offset(mut self) -> u64 {
        self.name();
        let n_dims = self.u32().min(MAX_DIMS as u32);
        self.take(8 * u64::from(n_dims) + 4);
        self.u64()
    }
}

impl TensorTable {
    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// The `index`th tensor in file order, read from `section`.
    pub fn entry<'a>(&self, section: &'a [u8], index: usize) -> Option<Entry<'a>> {
        let &start = self.starts.get(index)?;
        Some(Fields::at(section, start).entry())
    }

    /// The position in file order of the tensor named `name`: a binary search by name.
    pub fn find(&self, section: &[u8], name: &str) -> Option<usize> {
        let name_of = |i: u32| name_at(section, &self.starts, i);
        let at = self
            .by_name
            .binary_search_by(|&i| name_of(i).cmp(name.as_bytes()))
            .ok()?;
        self.by_name.get(at).map(|&i| i as usize)
    }

    /// All tensors' infos in file order, each built as the iterator reaches it.
    pub fn iter<'a>(&'a self, section: &'a [u8]) -> Tensors<'a> {
        Tensors {
            section,
            starts: self.starts.iter(),
        }
    }

    /// All tensors' names in file order, borrowed from `section`.
    pub fn names<'a>(&'a self, section: &'a [u8]) -> TensorNames<'a> {
        TensorNames {
            section,
            starts: self.starts.iter(),
        }
    }

    /// Checks each tensor's placement in file order (an offset that is a multiple of `align`,
    /// data inside a file of `file_len` bytes whose data section starts at `data_offset`), then
    /// that no two tensors' data overlap.
    pub fn check_placement(
        &self,
        section: &[u8],
        path: &Path,
        data_offset: u64,
        align: u64,
        file_len: u64,
    ) -> Result<()> {
        for (i, &start) in self.starts.iter().enumerate() {
            let e = Fields::at(section, start).entry();
            if e.offset % align != 0 {
                return Err(GgufError::MisalignedOffset {
                    path: path.to_path_buf(),
                    tensor: e.name.to_owned(),
                    tensor_index: i as u64,
                    offset: e.offset,
                    alignment: align,
                });
            }
            let span = (e.offset, e.sizes().1);
            tensor_span(path, e.name, span, data_offset, file_len)?;
        }
        self.check_no_overlap(section, path)
    }

    /// Checks that no two tensors' data ranges overlap: sorted by start (then by file order),
    /// each must start at or after the furthest end seen so far. Every range is non-empty (no
    /// dimension is zero) and lies inside the file (checked before), so the ends do not
    /// overflow.
    fn check_no_overlap(&self, section: &[u8], path: &Path) -> Result<()> {
        let offset = |i: u32| {
            let start = self.starts.get(i as usize).copied().unwrap_or(u32::MAX);
            Fields::at(section, start).offset()
        };
        let mut order: Vec<u32> = (0..self.starts.len() as u32).collect();
        order.sort_unstable_by_key(|&i| (offset(i), i));
        // The tensor reaching furthest so far, and where it ends.
        let mut reach: Option<(Entry<'_>, u64)> = None;
        for &i in &order {
            let Some(t) = self.entry(section, i as usize) else {
                continue;
            };
            let end = t.offset + t.sizes().1;
            if let Some((f, f_end)) = reach {
                if t.offset < f_end {
                    return Err(GgufError::OverlappingTensors {
                        path: path.to_path_buf(),
                        first: f.name.to_owned(),
                        first_start: f.offset,
                        first_end: f_end,
                        second: t.name.to_owned(),
                        second_start: t.offset,
                        second_end: end,
                    });
                }
            }
            if reach.map_or(true, |(_, e)| end > e) {
                reach = Some((t, end));
            }
        }
        Ok(())
    }
}

/// The name of tensor `i` (an index into `starts`) as bytes.
fn name_at<'a>(section: &'a [u8], starts: &[u32], i: u32) -> &'a [u8] {
    let start = starts.get(i as usize).copied().unwrap_or(u32::MAX);
    Fields::at(section, start).name()
}

/// Parses `count` tensor infos at the cursor (the count already checked against the bytes
/// left) into a table whose positions count from where the first starts, checking each as far
/// as it can be without the data offset.
///
/// The errors are those a reader going info by info meets first: for each info, reading it
/// (name, name rules, dimension count, dimensions, type, offset), then whether its name was
/// seen before, then its size ([`tensor_size`]). Duplicate names are found by sorting, once
/// the infos are read or when another error stops the parse, which the earliest duplicate
/// before it then replaces; the sorted order becomes the table's index by name.
pub(crate) fn parse_tensor_infos(
    c: &mut Cursor<'_>,
    count: u64,
    path: &Path,
) -> Result<TensorTable> {
    let base = c.pos();
    // The count was checked against the bytes left, so the reservation is bounded by them.
    let mut starts = Vec::with_capacity(count as usize);
    for i in 0..count {
        let read = match u32::try_from(c.pos() - base) {
            Ok(start) => read_info(c, i, path).map(|e| (start, e)),
            Err(_) => Err(GgufError::TensorInfosTooLarge {
                path: path.to_path_buf(),
                tensor_index: i,
                len: c.pos() - base,
            }),
        };
        let (start, e) = match read {
            Ok(r) => r,
            Err(err) => return Err(earlier_duplicate(c.bytes_from(base), &starts, path, err)),
        };
        starts.push(start);
        if let Err(err) = tensor_size(path, e.name, i, e.dims(), e.ty) {
            return Err(earlier_duplicate(c.bytes_from(base), &starts, path, err));
        }
    }
    let section = c.bytes_from(base);
    let (by_name, duplicate) = by_name(section, &starts);
    match duplicate {
        Some(i) => Err(duplicate_error(section, &starts, path, i)),
        None => Ok(TensorTable { starts, by_name }),
    }
}

/// Reads tensor info `i` at the cursor, checking its name and dimension count.
fn read_info<'a>(c: &mut Cursor<'a>, i: u64, path: &Path) -> Result<Entry<'a>> {
    let name = c.str_ref(&|| format!("tensor #{i} name"))?;
    if let Some(reason) = crate::tensor_name_problem(name) {
        return Err(GgufError::BadTensorName {
            path: path.to_path_buf(),
            index: i,
            name: name.to_owned(),
            reason,
        });
    }
    let field = |what: &str| format!("tensor #{i} `{name}` {what}");
    let n_dims = c.u32(&|| field("n_dims"))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            path: path.to_path_buf(),
            tensor: name.to_owned(),
            tensor_index: i,
            n_dims,
        });
    }
    let mut dims = [0; MAX_DIMS];
    for (d, dim) in dims.iter_mut().enumerate().take(n_dims as usize) {
        *dim = c.u64(&|| field(&format!("dims[{d}]")))?;
    }
    let ty = GgmlType(c.u32(&|| field("type"))?);
    let offset = c.u64(&|| field("offset"))?;
    Ok(Entry {
        name,
        dims,
        n_dims: n_dims as usize,
        ty,
        offset,
    })
}

/// The tensor indices sorted by name (then by index), and the first index in file order whose
/// name an earlier tensor has, if any.
fn by_name(section: &[u8], starts: &[u32]) -> (Vec<u32>, Option<u32>) {
    let name = |i: u32| name_at(section, starts, i);
    // `starts` has at most one entry per 32 bytes of a section under 4 GiB: the cast is exact.
    let mut order: Vec<u32> = (0..starts.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| name(a).cmp(name(b)).then(a.cmp(&b)));
    // In a run of equal names the second is the first repeat of that name.
    let duplicate = order
        .windows(2)
        .filter(|w| name(w[0]) == name(w[1]))
        .map(|w| w[1])
        .min();
    (order, duplicate)
}

/// `err`, unless one of the tensors read so far (`starts`) repeats an earlier name: then the
/// first such repeat, which a reader going info by info meets before `err`.
fn earlier_duplicate(section: &[u8], starts: &[u32], path: &Path, err: GgufError) -> GgufError {
    match by_name(section, starts).1 {
        Some(i) => duplicate_error(section, starts, path, i),
        None => err,
    }
}

fn duplicate_error(section: &[u8], starts: &[u32], path: &Path, i: u32) -> GgufError {
    let name = name_at(section, starts, i);
    GgufError::DuplicateTensor {
        path: path.to_path_buf(),
        tensor: String::from_utf8_lossy(name).into_owned(),
        tensor_index: u64::from(i),
    }
}

/// The tensor infos of a [`GgufFile`](crate::GgufFile) in file order, from
/// [`GgufFile::tensors`](crate::GgufFile::tensors): each [`TensorInfo`] is built from the
/// header's bytes when the iterator reaches it (its name and dimensions allocated then).
#[derive(Clone, Debug)]
pub struct Tensors<'a> {
    section: &'a [u8],
    starts: std::slice::Iter<'a, u32>,
}

impl Iterator for Tensors<'_> {
    type Item = TensorInfo;

    fn next(&mut self) -> Option<TensorInfo> {
        let &start = self.starts.next()?;
        Some(Fields::at(self.section, start).entry().to_info())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.starts.size_hint()
    }

    fn nth(&mut self, n: usize) -> Option<TensorInfo> {
        let &start = self.starts.nth(n)?;
        Some(Fields::at(self.section, start).entry().to_info())
    }
}

impl DoubleEndedIterator for Tensors<'_> {
    fn next_back(&mut self) -> Option<TensorInfo> {
        let &start = self.starts.next_back()?;
        Some(Fields::at(self.section, start).entry().to_info())
    }
}

impl ExactSizeIterator for Tensors<'_> {}

impl FusedIterator for Tensors<'_> {}

/// The tensor names of a [`GgufFile`](crate::GgufFile) in file order, from
/// [`GgufFile::tensor_names`](crate::GgufFile::tensor_names), borrowed from the header's
/// bytes: nothing is allocated.
#[derive(Clone, Debug)]
pub struct TensorNames<'a> {
    section: &'a [u8],
    starts: std::slice::Iter<'a, u32>,
}

impl<'a> Iterator for TensorNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let &start = self.starts.next()?;
        Some(std::str::from_utf8(Fields::at(self.section, start).name()).unwrap_or_default())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.starts.size_hint()
    }
}

impl DoubleEndedIterator for TensorNames<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let &start = self.starts.next_back()?;
        Some(std::str::from_utf8(Fields::at(self.section, start).name()).unwrap_or_default())
    }
}

impl ExactSizeIterator for TensorNames<'_> {}

impl FusedIterator for TensorNames<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_header_in_memory;
    use crate::GgufWriter;
    use std::borrow::Cow;

    /// A file of F32 tensors of one value each, named `names` in that order.
    fn file(names: &[&str]) -> Vec<u8> {
        let mut w = GgufWriter::new();
        for &name in names {
            w.add_tensor(name, &[1], GgmlType::F32, Cow::Owned(vec![0; 4]))
                .unwrap();
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        out
    }

    #[test]
    fn tensors_are_found_by_name_and_position() {
        let names = ["w.b", "", "w", "w.a", "\u{e9}", "a.z"];
        let bytes = file(&names);
        let h = parse_header_in_memory(&bytes, Path::new("t.gguf")).unwrap();
        let section = &bytes[h.infos.start as usize..h.infos.end as usize];
        let table = &h.tensors;
        assert_eq!(table.len(), names.len());
        assert!(table.names(section).eq(names.iter().copied()));
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.find(section, name), Some(i), "{name:?}");
            let t = table.entry(section, i).unwrap().to_info();
            assert_eq!((t.name.as_str(), t.dims, t.n_bytes), (*name, vec![1], 4));
        }
        for missing in ["w.", "w.c", "x", "a", "\u{e9}\u{e9}"] {
            assert_eq!(table.find(section, missing), None, "{missing:?}");
        }
        assert!(table.entry(section, names.len()).is_none());
        let all: Vec<TensorInfo> = table.iter(section).collect();
        assert_eq!(all.len(), names.len());
        let back: Vec<TensorInfo> = table.iter(section).rev().collect();
        assert!(back.iter().rev().eq(all.iter()));
        assert_eq!(table.iter(section).nth(2).unwrap().name, "w");
    }

    /// The bytes of a mapped file rewritten underneath need not check any more: whatever they
    /// are, reading the table gives values, never a panic.
    #[test]
    fn bytes_that_no_longer_check_are_read_without_panicking() {
        let bytes = file(&["a", "bb", "ccc"]);
        let h = parse_header_in_memory(&bytes, Path::new("t.gguf")).unwrap();
        let len = (h.infos.end - h.infos.start) as usize;
        let mut rewritten = vec![
            vec![0xff; len],
            vec![0; len],
            vec![0x80; len],
            bytes[h.infos.start as usize..][..len / 2].to_vec(),
            Vec::new(),
        ];
        // n_dims of the first info made huge, its name length past the end.
        let mut odd = bytes[h.infos.start as usize..h.infos.end as usize].to_vec();
        odd[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        rewritten.push(odd.clone());
        odd[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        rewritten.push(odd);
        for section in &rewritten {
            let table = &h.tensors;
            let all: Vec<TensorInfo> = table.iter(section).collect();
            assert_eq!(all.len(), 3);
            assert!(all.iter().all(|t| t.dims.len() <= MAX_DIMS));
            assert_eq!(table.names(section).count(), 3);
            for name in ["a", "bb", "ccc", ""] {
                let _ = table.find(section, name);
            }
            let e = table.check_placement(section, Path::new("t.gguf"), 64, 32, 1 << 20);
            let _ = e.map_err(|e| e.to_string());
        }
    }
}
