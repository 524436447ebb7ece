//! The golden check: every F32, F16 and BF16 tensor of every file in `tests/data` dequantizes to
//! the sha256 llama.cpp's f32 output has (reference, fast and multi-core paths).

use quant_testkit::golden::check_golden;

#[test]
fn golden_f32() {
    let checked = check_golden(&quant_float::F32);
    // all-types.gguf has F32.weights; every tiny-llama file has three norm vectors.
    assert!(checked.len() >= 16, "{checked:?}");
}

#[test]
fn golden_f16() {
    let checked = check_golden(&quant_float::F16);
    assert!(
        checked.iter().any(|c| c.ends_with("F16.bytes")),
        "{checked:?}"
    );
}

#[test]
fn golden_bf16() {
    let checked = check_golden(&quant_float::BF16);
    assert!(
        checked.iter().any(|c| c.ends_with("BF16.bytes")),
        "{checked:?}"
    );
}
