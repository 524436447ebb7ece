//! The golden check: every Q4_0 tensor of every file in `tests/data` dequantizes to the sha256
//! of llama.cpp's f32 output (reference, fast and multi-core paths).

use quant_testkit::golden;

#[test]
fn golden_q4_0() {
    let checked = golden::check_golden(&quant_q4_0::Q4_0);
    // all-types.gguf: Q4_0.weights and Q4_0.bytes (random bytes: NaN/inf scales);
    // tiny-llama-q4_0.gguf: seven weight matrices.
    assert!(checked.len() >= 9, "{checked:?}");
    assert!(
        checked.iter().any(|c| c.ends_with("Q4_0.bytes")),
        "{checked:?}"
    );
}
