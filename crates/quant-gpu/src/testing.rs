//! The switch of every GPU test suite, written once: quant-cuda's, quant-rocm's and the
//! workspace's cross-crate tests all ask here whether they run.
//!
//! * Without `QUANTFORGE_GPU_TESTS=1` a GPU test prints a `SKIPPED:` line naming itself and
//!   returns: CI has no GPU, and the line (which CI greps for) says what did not run.
//! * With it, `QUANTFORGE_GPU_KIND=hip` picks AMD and anything else NVIDIA; a test written for
//!   the other vendor skips with a `SKIPPED:` line, and a missing device of the chosen vendor
//!   fails the test loudly ([`expect_device`]).
//!
//! The lines go straight to the process's stderr rather than through `eprintln!`, which libtest
//! captures for passing tests.

use std::fmt::Display;
use std::io::Write;

use crate::DeviceKind;

/// `1` runs the GPU tests.
pub const GPU_TESTS_ENV: &str = "QUANTFORGE_GPU_TESTS";
/// `hip` picks the AMD GPU for the tests; anything else (or nothing) the NVIDIA one.
pub const GPU_KIND_ENV: &str = "QUANTFORGE_GPU_KIND";

/// The vendor the GPU tests run on, or `None` (with a `SKIPPED:` line naming `test`) when they
/// are off.
pub fn gpu_test_kind(test: &str) -> Option<DeviceKind> {
    let tests = std::env::var(GPU_TESTS_ENV).ok();
    let kind = std::env::var(GPU_KIND_ENV).ok();
    decide(tests.as_deref(), kind.as_deref(), None, test)
        .map_err(skip)
        .ok()
}

/// Whether a GPU test written for `kind` runs; when it does not, a `SKIPPED:` line naming
/// `test` says how to run it.
pub fn gpu_tests_enabled(kind: DeviceKind, test: &str) -> bool {
    let tests = std::env::var(GPU_TESTS_ENV).ok();
    let chosen = std::env::var(GPU_KIND_ENV).ok();
    decide(tests.as_deref(), chosen.as_deref(), Some(kind), test)
        .map_err(skip)
        .is_ok()
}

/// The device a GPU test opened; when it could not be opened, the test fails with the reason,
/// since the GPU tests were asked for.
pub fn expect_device<T, E: Display>(kind: DeviceKind, opened: Result<T, E>) -> T {
    opened.unwrap_or_else(|e| panic!("{GPU_TESTS_ENV}=1 but no usable {kind} device: {e}"))
}

fn skip(line: String) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The rule, on the variables' values: the vendor the tests run on, or the `SKIPPED:` line.
/// `wanted` is the vendor a test is written for (`None`: either).
fn decide(
    tests: Option<&str>,
    chosen: Option<&str>,
    wanted: Option<DeviceKind>,
    test: &str,
) -> Result<DeviceKind, String> {
    let chosen = match chosen {
        Some("hip") => DeviceKind::Hip,
        _ => DeviceKind::Cuda,
    };
    let (vendor, switches) = match wanted {
        None => (String::new(), format!("{GPU_TESTS_ENV}=1")),
        Some(DeviceKind::Cuda) => ("CUDA ".into(), format!("{GPU_TESTS_ENV}=1")),
        Some(DeviceKind::Hip) => (
            "HIP ".into(),
            format!("{GPU_TESTS_ENV}=1 {GPU_KIND_ENV}=hip"),
        ),
    };
    if tests != Some("1") {
        return Err(format!(
            "SKIPPED: set {switches} to run the {vendor}GPU test {test}"
        ));
    }
    match wanted {
        Some(kind) if kind != chosen => Err(format!(
            "SKIPPED: the {vendor}GPU test {test}: {GPU_KIND_ENV} picks {chosen}"
        )),
        _ => Ok(chosen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_run_only_when_asked_and_on_the_vendor_asked_for() {
        use DeviceKind::{Cuda, Hip};
        assert_eq!(decide(Some("1"), None, None, "t"), Ok(Cuda));
        assert_eq!(decide(Some("1"), Some("cuda"), Some(Cuda), "t"), Ok(Cuda));
        assert_eq!(decide(Some("1"), Some("hip"), None, "t"), Ok(Hip));
        assert_eq!(decide(Some("1"), Some("hip"), Some(Hip), "t"), Ok(Hip));
        for (tests, kind, wanted, line) in [
            (
                None,
                None,
                None,
                "SKIPPED: set QUANTFORGE_GPU_TESTS=1 to run the GPU test t",
            ),
            (
                Some("0"),
                None,
                Some(Cuda),
                "SKIPPED: set QUANTFORGE_GPU_TESTS=1 to run the CUDA GPU test t",
            ),
            (
                Some("yes"),
                Some("hip"),
                Some(Hip),
                "SKIPPED: set QUANTFORGE_GPU_TESTS=1 QUANTFORGE_GPU_KIND=hip to run the HIP GPU \
                 test t",
            ),
            (
                Some("1"),
                None,
                Some(Hip),
                "SKIPPED: the HIP GPU test t: QUANTFORGE_GPU_KIND picks cuda",
            ),
            (
                Some("1"),
                Some("hip"),
                Some(Cuda),
                "SKIPPED: the CUDA GPU test t: QUANTFORGE_GPU_KIND picks hip",
            ),
        ] {
            assert_eq!(decide(tests, kind, wanted, "t"), Err(line.to_string()));
        }
    }

    #[test]
    #[should_panic(expected = "QUANTFORGE_GPU_TESTS=1 but no usable hip device: no /dev/kfd")]
    fn a_missing_device_fails_loudly() {
        expect_device::<(), _>(DeviceKind::Hip, Err("no /dev/kfd"));
    }
}
