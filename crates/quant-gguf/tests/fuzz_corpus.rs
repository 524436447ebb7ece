//! Replays the committed fuzz corpora (and any crash reproducers) of the `gguf_reader` and
//! `roundtrip` targets as ordinary tests, with the very checks the fuzz targets run
//! (`fuzz/checks/*.rs`, included below). See docs/reliability.md.

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/checks/gguf_reader.rs"]
mod gguf_reader_check;
#[path = "../../../fuzz/checks/roundtrip.rs"]
mod roundtrip_check;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file in `fuzz/corpus/<target>` and `fuzz/artifacts/<target>` (the latter may be
/// absent), sorted.
fn inputs(target: &str) -> (Vec<PathBuf>, usize) {
    let mut files = Vec::new();
    let mut corpus_len = 0;
    for (kind, required) in [("corpus", true), ("artifacts", false)] {
        let dir = fuzz_dir().join(kind).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let mut v: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        v.sort();
        if kind == "corpus" {
            corpus_len = v.len();
        }
        files.extend(v);
    }
    (files, corpus_len)
}

/// Runs `check` on every input, collecting the names of those that panic.
fn replay(target: &str, min_corpus: usize, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let (files, corpus_len) = inputs(target);
    assert!(
        corpus_len >= min_corpus,
        "fuzz/corpus/{target} holds {corpus_len} files, expected at least {min_corpus}"
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|p| {
            let data = std::fs::read(p).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: checks failed on {failed:#?}");
}

#[test]
fn gguf_reader_corpus() {
    let parsed = std::sync::atomic::AtomicUsize::new(0);
    replay("gguf_reader", 20, |data| {
        if gguf_reader_check::check_gguf_reader(data) {
            parsed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // The corpus must keep files that open, or the success-path checks test nothing.
    assert!(parsed.into_inner() >= 3, "too few corpus files parse");
}

#[test]
fn gguf_reader_on_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "gguf") {
            let data = std::fs::read(&p).unwrap();
            assert!(
                gguf_reader_check::check_gguf_reader(&data),
                "{}",
                p.display()
            );
            n += 1;
        }
    }
    assert!(n >= 6, "golden files missing");
}

#[test]
fn roundtrip_corpus() {
    replay("roundtrip", 20, roundtrip_check::check_roundtrip);
}

/// The checks themselves must be able to fail: a broken file, a broken promise.
#[test]
fn checks_can_fail() {
    // An input that does not parse returns false (and its error names the file).
    assert!(!gguf_reader_check::check_gguf_reader(b"GGUF\x03\0\0\0"));
    // Bitwise equality tells NaN payloads and signs of zero apart.
    use quant_gguf::MetaValue as V;
    assert!(!roundtrip_check::meta_bits_eq(&V::F32(0.0), &V::F32(-0.0)));
    assert!(roundtrip_check::meta_bits_eq(
        &V::F32(f32::from_bits(0x7fc0_0001)),
        &V::F32(f32::from_bits(0x7fc0_0001))
    ));
    assert!(!roundtrip_check::meta_bits_eq(
        &V::F64(f64::from_bits(0x7ff8_0000_0000_0001)),
        &V::F64(f64::from_bits(0x7ff8_0000_0000_0002))
    ));
}
