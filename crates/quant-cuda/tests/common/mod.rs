//! What quant-cuda's GPU test binaries share.

/// Whether GPU tests run: with `QUANTFORGE_GPU_TESTS=1` (and then a missing GPU fails them);
/// otherwise a visible `SKIPPED` line naming `test` is printed and the test returns.
pub fn gpu_tests_enabled(test: &str) -> bool {
    match std::env::var("QUANTFORGE_GPU_TESTS").as_deref() {
        Ok("1") => true,
        _ => {
            // Straight to the stderr handle: libtest captures println!/eprintln! of passing
            // tests, and this line must stay visible.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set QUANTFORGE_GPU_TESTS=1 to run the CUDA GPU test {test}"
            );
            false
        }
    }
}
