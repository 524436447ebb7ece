//! Replays the committed corpus (and any crash reproducers) of the `dequant` fuzz target as an
//! ordinary test, with the very check the target runs (`fuzz/checks/dequant.rs`, included
//! below). It lives in the facade crate because only here are the format crates linked: the
//! check requires every format of `DEQUANT_EXPECTED` in the registry. See docs/reliability.md.
#![cfg(all(feature = "q4_0", feature = "q4k", feature = "q6k", feature = "float"))]

use std::path::{Path, PathBuf};

// Name every format crate so that the linker keeps it and its registry entry.
use quantforge::{quant_float as _, quant_q4_0 as _, quant_q4k as _, quant_q6k as _};

#[path = "../../../fuzz/checks/dequant.rs"]
mod dequant_check;

#[path = "../../../fuzz/checks/python_api.rs"]
mod python_api_check;

fn files(kind: &str, required: bool) -> Vec<PathBuf> {
    target_files("dequant", kind, required)
}

/// The committed inputs of fuzz target `target` under `fuzz/<kind>/`.
fn target_files(target: &str, kind: &str, required: bool) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

/// Runs `check` on every committed input of fuzz target `target` (its corpus, of at least 20
/// files, and any crash reproducers), and fails naming every input it panics on.
fn replay(target: &str, check: fn(&[u8])) {
    let mut all = target_files(target, "corpus", true);
    assert!(all.len() >= 20, "fuzz/corpus/{target} holds {}", all.len());
    all.extend(target_files(target, "artifacts", false));
    let failed: Vec<String> = all
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
fn dequant_corpus() {
    replay("dequant", dequant_check::check_dequant);
}

/// Every format in the registry is exercised by the corpus: its first byte picks the format.
#[test]
fn dequant_corpus_covers_every_format() {
    let n = quant_core::registry().iter().count();
    let mut seen = vec![false; n];
    for p in files("corpus", true) {
        let data = std::fs::read(&p).unwrap();
        if data.len() >= 4 {
            seen[data[0] as usize % n] = true;
        }
    }
    assert!(
        seen.iter().all(|&s| s),
        "formats without corpus inputs: {seen:?}"
    );
}

/// The registry holds what the check expects, so the replay above is not vacuous.
#[test]
fn dequant_formats_are_linked() {
    quant_core::registry()
        .require(&dequant_check::DEQUANT_EXPECTED)
        .unwrap();
}

/// The `python_api` target's corpus (the Rust entry points the Python package calls, with
/// Python's arguments) replayed with its own check.
#[test]
fn python_api_corpus() {
    replay("python_api", python_api_check::check_python_api);
}
