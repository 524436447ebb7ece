//! Fuzz target: the Rust entry points the Python package calls (the CPU dequantize op on blocks
//! a caller hands over, and regions of a file as slices and shards read them), with arguments
//! as a Python caller may pass them. The checks live in `checks/python_api.rs`, shared with the
//! corpus replay test in `crates/quantforge/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
// Name every format crate so that the linker keeps it and its registry entry.
use quantforge::{quant_float as _, quant_q4_0 as _, quant_q4k as _, quant_q6k as _};

#[path = "../checks/python_api.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_python_api(data);
});
