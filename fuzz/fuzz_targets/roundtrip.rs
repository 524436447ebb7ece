//! Fuzz target: metadata and tensors decoded from the input survive `GgufWriter` ->
//! `GgufFile::from_bytes` unchanged (floats compared by bits). The checks live in
//! `checks/roundtrip.rs`, shared with the corpus replay test in
//! `crates/quant-gguf/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/roundtrip.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_roundtrip(data);
});
