//! The golden check: every Q4_K tensor of every file in `tests/data` dequantizes to the sha256
//! of llama.cpp's f32 output (reference, fast and multi-core paths).

use quant_testkit::golden;

#[test]
fn golden_q4_k() {
    let checked = golden::check_golden(&quant_q4k::Q4_K);
    // all-types.gguf: Q4_K.weights and Q4_K.bytes (random bytes: NaN/inf scales);
    // tiny-llama-q4_k_m.gguf and -q5_k_m.gguf: several weight matrices each.
    assert!(
        checked.iter().any(|c| c.ends_with("Q4_K.bytes")),
        "{checked:?}"
    );
    assert!(
        checked.iter().any(|c| c.starts_with("tiny-llama-q4_k_m")),
        "{checked:?}"
    );
}
