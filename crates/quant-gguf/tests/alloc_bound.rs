//! Bounded memory on open: a counting global allocator measures the peak number of bytes live
//! while `GgufFile::from_bytes` / `open` / `open_with` runs, on hostile headers and on the golden
//! files. Every case must stay within [`bound`]: `64 × file size + 1 MiB`. Hostile inputs must also
//! fail with an error, and fail fast (well under a second each).
//!
//! The allocator counts per thread (a thread-local switch), so tests running in parallel in
//! this binary do not disturb each other's figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quant_gguf::{GgufError, GgufFile, MetaType, OpenOptions, MAX_ARRAY_DEPTH};

mod common;
use common::B;

/// Bytes allowed per byte of input file.
const PER_FILE_BYTE: u64 = 64;
/// Bytes allowed regardless of the file's size.
const FIXED: u64 = 1 << 20;
/// Longest a hostile input may take to be refused (CPU time of the opening thread, where the
/// platform says; wall time elsewhere).
const MAX_TIME: Duration = Duration::from_secs(1);

/// The documented bound (docs/reliability.md): `64 × len + 1 MiB`.
fn bound(file_len: u64) -> u64 {
    PER_FILE_BYTE * file_len + FIXED
}

/// Bytes a valid file's parsed header may cost per metadata pair (the pair's own structures
/// and its index entry), on top of [`header_bound`]'s 2× its bytes.
const PER_PAIR: u64 = 256;

/// Bytes a valid file's parsed header may cost per tensor info beyond the info's own bytes:
/// the tensor table keeps 8 (where the info starts, its place in the order by name), and the
/// overlap check sorts 4 more for a moment.
const PER_TENSOR: u64 = 16;

/// The documented bound for a valid file (docs/reliability.md, P3): metadata and tensor infos
/// cost about their size in the file: `2 × header bytes + 256 × metadata pairs + 16 × tensor
/// infos + 1 MiB`, where the header runs from the magic to the data section. An unmapped open
/// adds the prefix it reads the header from (`prefix` bytes; 0 for the other modes).
fn header_bound(f: &GgufFile, prefix: u64) -> u64 {
    let pairs = f.metadata().len() as u64;
    let tensors = f.tensor_count() as u64;
    2 * f.data_offset() + PER_PAIR * pairs + PER_TENSOR * tensors + FIXED + prefix
}

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LIVE.with(|l| {
                let v = l.get() + n as i64;
                l.set(v);
                PEAK.with(|p| p.set(p.get().max(v)));
            });
        }
    });
}

fn shrink(n: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LIVE.with(|l| l.set(l.get() - n as i64));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counting only touches
// const-initialised thread-locals, which neither allocate nor panic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrink(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as if old and new blocks were both live for a moment (a move).
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the peak of bytes live (allocated by this thread during
/// `f` and not yet freed), relative to the start.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, PEAK.with(|p| p.get()).max(0) as u64)
}

/// Opens `bytes` from memory, and from a temporary file both mapped and read, measuring each.
/// Returns the results (all three must agree on success or failure) and the worst peak.
fn open_all_ways(bytes: &[u8], what: &str) -> (Vec<Result<GgufFile, GgufError>>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{what}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    let mut results = Vec::new();
    let mut worst = 0;
    let v = bytes.to_vec();
    let (r, p) = peak_of(move || GgufFile::from_bytes(v, format!("{what}.gguf")));
    results.push(r);
    worst = worst.max(p);
    for mmap in [true, false] {
        let (r, p) = peak_of(|| GgufFile::open_with(&path, OpenOptions { mmap }));
        results.push(r);
        worst = worst.max(p);
    }
    (results, worst)
}

/// CPU time this thread has used (user + system), where Linux says (`/proc/thread-self/stat`,
/// in clock ticks of 10 ms); `None` elsewhere. Timing by CPU time keeps the limit meaningful on
/// a loaded machine, where wall time measures the other processes too.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Held by the timed cases and by the 140 MiB case, so that the latter's writing and parsing do
/// not slow the timed ones on a small machine.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Checks that a hostile input fails every way, in time and within the bound; returns the peak.
fn hostile(what: &str, bytes: &[u8], expect: fn(&GgufError) -> bool) -> u64 {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (start, cpu) = (Instant::now(), thread_cpu_time());
    let (results, peak) = open_all_ways(bytes, what);
    let took = match (cpu, thread_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => start.elapsed(),
    };
    for r in results {
        match r {
            Ok(f) => panic!("{what}: hostile input opened: {f:?}"),
            Err(e) => assert!(expect(&e), "{what}: unexpected error: {e}"),
        }
    }
    let len = bytes.len() as u64;
    eprintln!(
        "{what}: {len} bytes, peak {peak} bytes ({:.1} x len), {took:?} of CPU for 3 opens",
        peak as f64 / len as f64
    );
    assert!(
        peak <= bound(len),
        "{what}: peak {peak} bytes over the bound {} for a {len}-byte file",
        bound(len)
    );
    assert!(took < MAX_TIME, "{what}: took {took:?}");
    peak
}

#[test]
fn tensor_count_2_pow_63() {
    let mut b = B::header(3, 1 << 63, 0);
    b.zeros(64);
    hostile(
        "tensors-2^63",
        &b.0,
        |e| matches!(e, GgufError::CountTooLarge { count, .. } if *count == 1 << 63),
    );
}

#[test]
fn metadata_count_2_pow_40() {
    let mut b = B::header(3, 0, 1 << 40);
    b.zeros(64);
    hostile(
        "kv-2^40",
        &b.0,
        |e| matches!(e, GgufError::CountTooLarge { count, .. } if *count == 1 << 40),
    );
}

#[test]
fn array_of_2_pow_60() {
    for elem in MetaType::ALL {
        let mut b = B::header(3, 0, 1);
        b.str(b"big").u32(MetaType::Array.id()).arr(elem, 1 << 60);
        b.zeros(4096);
        hostile(
            &format!("array-2^60-{elem}"),
            &b.0,
            |e| matches!(e, GgufError::CountTooLarge { count, .. } if *count == 1 << 60),
        );
    }
}

#[test]
fn arrays_nested_5000_deep() {
    let mut b = B::header(3, 0, 1);
    b.str(b"deep").u32(MetaType::Array.id());
    for _ in 0..5000 {
        b.arr(MetaType::Array, 1);
    }
    b.arr(MetaType::U8, 0);
    hostile(
        "nested-5000",
        &b.0,
        |e| matches!(e, GgufError::NestingTooDeep { limit, .. } if *limit == MAX_ARRAY_DEPTH),
    );
}

/// Every level of a maximally deep nest claims as many elements as the bytes left allow; the
/// claims must not add up to more memory than the file could ever fill.
#[test]
fn nested_arrays_each_claiming_everything() {
    for size in [4 << 10, 64 << 10, 1 << 20, 4 << 20] {
        let mut b = B::header(3, 0, 1);
        b.str(b"greedy").u32(MetaType::Array.id());
        for _ in 0..MAX_ARRAY_DEPTH {
            b.arr(MetaType::Array, (size / 12) as u64);
        }
        b.zeros(size);
        hostile(&format!("nested-greedy-{size}"), &b.0, |e| {
            matches!(
                e,
                GgufError::NestingTooDeep { .. }
                    | GgufError::CountTooLarge { .. }
                    | GgufError::Truncated { .. }
            )
        });
    }
}

#[test]
fn huge_string_lengths() {
    for len in [1u64 << 62, u64::MAX, 1 << 33] {
        // Key length.
        let mut b = B::header(3, 0, 1);
        b.u64(len).zeros(64);
        hostile(&format!("key-len-{len}"), &b.0, |e| {
            matches!(e, GgufError::StringTooLong { .. })
        });
        // String value length.
        let mut b = B::header(3, 0, 1);
        b.str(b"s").u32(MetaType::String.id()).u64(len).zeros(64);
        hostile(&format!("value-len-{len}"), &b.0, |e| {
            matches!(e, GgufError::StringTooLong { .. })
        });
        // Tensor name length.
        let mut b = B::header(3, 1, 0);
        b.u64(len).zeros(64);
        hostile(&format!("tensor-name-len-{len}"), &b.0, |e| {
            matches!(e, GgufError::StringTooLong { .. })
        });
        // String inside an array of strings.
        let mut b = B::header(3, 0, 1);
        b.str(b"a")
            .u32(MetaType::Array.id())
            .arr(MetaType::String, 2);
        b.str(b"ok").u64(len).zeros(64);
        hostile(&format!("array-string-len-{len}"), &b.0, |e| {
            matches!(e, GgufError::StringTooLong { .. })
        });
    }
}

/// The largest arrays of the smallest elements the file can hold, complete, followed by a
/// broken second key: the parser builds the whole array before it finds out.
#[test]
fn big_arrays_then_error() {
    for elem in [
        MetaType::U8,
        MetaType::Bool,
        MetaType::String,
        MetaType::Array,
    ] {
        let n: u64 = (1 << 20) + 1;
        let mut b = B::header(3, 0, 2);
        b.str(b"a").u32(MetaType::Array.id()).arr(elem, n);
        // All zeros: u8 0, bool false, empty strings, empty u8 arrays (type 0, count 0).
        b.zeros((n * elem.min_encoded_len()) as usize);
        // Second key: claims 100 bytes, has 8.
        b.u64(100).zeros(8);
        hostile(&format!("big-array-{elem}-then-error"), &b.0, |e| {
            matches!(e, GgufError::StringTooLong { .. })
        });
    }
}

/// A valid file with a 140 MiB `u8` array (the format allows it; llama.cpp files hold arrays of
/// hundreds of thousands of tokens) opens, mapped and unmapped, with its metadata costing about
/// its size: within `2 × header + fixed` (issue 12: each byte used to become a 32-byte value,
/// 4.7 GB, and the allocation aborted the process). The file is streamed to disk, never held in
/// memory whole.
#[test]
fn a_140_mib_u8_array_costs_about_its_size() {
    use std::io::Write;
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n: u64 = 140 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-u8-array.gguf");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut b = B::header(3, 1, 2);
        b.kv_str("general.architecture", b"llama");
        b.str(b"big").u32(MetaType::Array.id()).arr(MetaType::U8, n);
        out.write_all(&b.0).unwrap();
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7) as u8).collect();
        for _ in 0..n >> 20 {
            out.write_all(&chunk).unwrap();
        }
        let mut b = B(Vec::new());
        b.tensor("t", &[8], 0, 0);
        let header_len = (B::header(3, 1, 2).0.len() as u64)
            + 8 + 20 + 4 + 8 + 5 // general.architecture
            + 8 + 3 + 4 + 4 + 8 + n // big
            + b.0.len() as u64;
        let pad = header_len.div_ceil(32) * 32 - header_len;
        b.zeros(pad as usize + 32);
        out.write_all(&b.0).unwrap();
        out.flush().unwrap();
    }
    let file_len = std::fs::metadata(&path).unwrap().len();
    for mmap in [true, false] {
        let (r, peak) = peak_of(|| GgufFile::open_with(&path, OpenOptions { mmap }));
        let f = r.unwrap();
        let a = f.get("big").unwrap().as_array().unwrap();
        assert_eq!(a.len() as u64, n);
        assert_eq!(a.as_u8s().unwrap()[1000], (1000 * 7) as u8);
        assert_eq!(f.tensor("t").unwrap().n_bytes, 32);
        // Unmapped, the header is read into a prefix first: here the whole file.
        let prefix = if mmap { 0 } else { file_len };
        let bound = header_bound(&f, prefix);
        eprintln!(
            "140 MiB u8 array, mmap {mmap}: {file_len} bytes, peak {peak} ({:.2} x header)",
            peak as f64 / f.data_offset() as f64
        );
        assert!(
            peak <= bound,
            "mmap {mmap}: peak {peak} bytes over the bound {bound} (header {} bytes)",
            f.data_offset()
        );
    }
}

/// A valid file of 200 000 one-value tensors (a header of 7.6 MB, nearly all tensor infos)
/// opens in every mode within the bound: its tensor infos cost about their bytes in the file,
/// not a `String`, a `Vec` and an index entry each. Unmapped, the header is read from a prefix
/// of at most 1.5 × its size, and the prefix is then cut down in place to the tensor infos
/// (which this allocator counts as a copy).
#[test]
fn a_header_of_many_tiny_tensors_costs_about_its_size() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n: u64 = 200_000;
    let mut b = B::header(3, n, 0);
    for i in 0..n {
        b.tensor(&format!("blk.{i}.w"), &[1], 0, 32 * i);
    }
    b.pad(32).zeros(32 * n as usize);
    let (results, peak) = open_all_ways(&b.0, "many-tensors");
    for r in results {
        let f = r.unwrap();
        assert_eq!(f.tensor_count() as u64, n);
        let t = f.tensor("blk.123456.w").unwrap();
        assert_eq!(
            (t.dims.as_slice(), t.offset, t.n_bytes),
            (&[1][..], 32 * 123456, 4)
        );
        let header = f.data_offset();
        // The worst of the three opens is the unmapped one: its prefix, and the tensor infos
        // moved out of it.
        let prefix = header + header / 2 + header;
        eprintln!(
            "{n} tensors: header {header} bytes, peak {peak} ({:.2} x header)",
            peak as f64 / header as f64
        );
        assert!(
            peak <= header_bound(&f, prefix),
            "peak {peak} over {}",
            header_bound(&f, prefix)
        );
    }
}

/// The largest legal arrays of the smallest elements, complete: must open, within the bound.
#[test]
fn big_valid_arrays() {
    for elem in [MetaType::U8, MetaType::String, MetaType::Array] {
        let n: u64 = (1 << 20) + 1;
        let mut b = B::header(3, 0, 1);
        b.str(b"a").u32(MetaType::Array.id()).arr(elem, n);
        b.zeros((n * elem.min_encoded_len()) as usize);
        let len = b.0.len() as u64;
        let (results, peak) = open_all_ways(&b.0, &format!("big-valid-{elem}"));
        for r in results {
            let f = r.unwrap();
            assert_eq!(f.get("a").unwrap().as_array().unwrap().len() as u64, n);
            // The worst of the three opens includes the unmapped prefix (the whole file).
            assert!(
                peak <= header_bound(&f, len),
                "{elem}: peak {peak} over the metadata bound {}",
                header_bound(&f, len)
            );
        }
        eprintln!(
            "big-valid-{elem}: {len} bytes, peak {peak} ({:.1} x len)",
            peak as f64 / len as f64
        );
        assert!(
            peak <= bound(len),
            "{elem}: peak {peak} over {}",
            bound(len)
        );
    }
}

/// Many tiny metadata pairs and many tiny tensor infos, as dense as the format allows.
#[test]
fn many_small_entries() {
    let n = 50_000u64;
    let mut b = B::header(3, 0, n);
    for i in 0..n {
        b.str(format!("{i:x}").as_bytes()).u32(MetaType::U8.id());
        b.0.push(0);
    }
    let (results, peak) = open_all_ways(&b.0, "many-kv");
    let len = b.0.len() as u64;
    for r in results {
        let f = r.unwrap();
        assert_eq!(f.metadata().len() as u64, n);
        assert!(peak <= header_bound(&f, len), "peak {peak}");
    }
    eprintln!(
        "many-kv: {len} bytes, peak {peak} ({:.1} x len)",
        peak as f64 / len as f64
    );
    assert!(peak <= bound(len));

    let mut b = B::header(3, n, 0);
    for i in 0..n {
        b.str(format!("{i:x}").as_bytes())
            .u32(1)
            .u64(1)
            .u32(0)
            .u64(32 * i);
    }
    // Tensor after tensor, one aligned 32-byte slot each (no two may overlap).
    while b.0.len() % 32 != 0 {
        b.0.push(0);
    }
    b.zeros(32 * n as usize);
    let (results, peak) = open_all_ways(&b.0, "many-tensors");
    let len = b.0.len() as u64;
    for r in results {
        let f = r.unwrap();
        assert_eq!(f.tensor_count() as u64, n);
        assert!(peak <= header_bound(&f, len), "peak {peak}");
    }
    eprintln!(
        "many-tensors: {len} bytes, peak {peak} ({:.1} x len)",
        peak as f64 / len as f64
    );
    assert!(peak <= bound(len));
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    v.sort();
    v
}

#[test]
fn golden_files_stay_within_the_bound() {
    let files = golden_files();
    assert!(files.len() >= 6, "golden files missing: {files:?}");
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let len = bytes.len() as u64;
        let (results, peak) = open_all_ways(&bytes, "golden");
        for r in results {
            r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        eprintln!(
            "{}: {len} bytes, peak {peak} ({:.2} x len)",
            path.display(),
            peak as f64 / len as f64
        );
        assert!(peak <= bound(len), "{}: peak {peak}", path.display());
    }
}

/// Unmapped, the open reads the header only: a 16 MiB tensor behind a header of a few hundred
/// bytes costs a small prefix (the whole header fits in the first, 1 MiB at most), not the
/// file, and keeps only the tensor info; reading the tensor allocates the tensor, once.
#[test]
fn unmapped_open_does_not_read_the_tensor_data() {
    let n_bytes = 16usize << 20;
    let mut w = quant_gguf::GgufWriter::new();
    w.add_tensor(
        "big",
        &[(n_bytes / 4) as u64],
        quant_core::GgmlType::F32,
        vec![3u8; n_bytes].into(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-data.gguf");
    w.write_file(&path).unwrap();
    drop(w);
    let len = std::fs::metadata(&path).unwrap().len();

    let (r, peak) = peak_of(|| GgufFile::open_with(&path, OpenOptions { mmap: false }));
    let f = r.unwrap();
    eprintln!("unmapped open of {len} bytes: peak {peak} bytes");
    assert!(
        peak <= FIXED + (64 << 10),
        "unmapped open of a {len}-byte file with a small header: peak {peak} bytes"
    );
    // Of the file it keeps only its one tensor info (name 8 + 3, n_dims 4, a dim 8, type 4,
    // offset 8).
    assert_eq!(f.resident_bytes(), 35);

    let t = f.tensor("big").unwrap();
    let (sum, peak) = peak_of(|| {
        let d = f.tensor_data(&t).unwrap();
        d.iter().map(|&b| u64::from(b)).sum::<u64>()
    });
    assert_eq!(sum, 3 * n_bytes as u64);
    assert!(
        (n_bytes as u64..n_bytes as u64 + (64 << 10)).contains(&peak),
        "reading a {n_bytes}-byte tensor: peak {peak} bytes"
    );
    // Reading into the caller's buffer allocates nothing.
    let mut buf = vec![0u8; 4096];
    let (r, peak) = peak_of(|| f.read_tensor_at(&t, 12345, &mut buf));
    r.unwrap();
    assert!(buf.iter().all(|&b| b == 3));
    assert!(peak < 1024, "read_tensor_at: peak {peak} bytes");
}

/// The counting allocator itself must see allocations, or every bound above passes vacuously.
#[test]
fn the_counter_counts() {
    let (v, peak) = peak_of(|| vec![1u8; 3 << 20]);
    assert!(peak >= 3 << 20, "peak {peak}");
    drop(v);
    let (_, peak) = peak_of(|| {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..100_000 {
            v.push(i);
        }
        v.len()
    });
    assert!(peak >= 800_000, "peak {peak}");
}
