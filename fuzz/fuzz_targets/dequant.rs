//! Fuzz target: every registered format's CPU reference and fast path agree bit for bit on
//! arbitrary bytes, and length mismatches are errors. The checks live in `checks/dequant.rs`,
//! shared with the corpus replay test in `crates/quantforge/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
// Name every format crate so that the linker keeps it and its registry entry.
use quantforge::{quant_float as _, quant_q4_0 as _, quant_q4k as _, quant_q6k as _};

#[path = "../checks/dequant.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_dequant(data);
});
