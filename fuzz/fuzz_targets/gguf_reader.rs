//! Fuzz target: the GGUF reader on arbitrary bytes must never panic, never read out of bounds,
//! and name the file in every error. The checks live in `checks/gguf_reader.rs`, shared with
//! the corpus replay test in `crates/quant-gguf/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/gguf_reader.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_gguf_reader(data);
});
