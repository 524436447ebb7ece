//! The golden check: every Q6_K tensor of every file in `tests/data` dequantizes to the sha256
//! of llama.cpp's f32 output (reference, fast and multi-core paths).

use quant_testkit::golden;

#[test]
fn golden_q6_k() {
    let checked = golden::check_golden(&quant_q6k::Q6_K);
    // all-types.gguf: Q6_K.weights and Q6_K.bytes (random bytes: NaN/inf scales);
    // the q4_k_m, q5_k_m and q6_k tiny llamas hold Q6_K matrices too.
    assert!(
        checked.iter().any(|c| c.ends_with("Q6_K.bytes")),
        "{checked:?}"
    );
    assert!(
        checked.iter().any(|c| c.starts_with("tiny-llama-q6_k")),
        "{checked:?}"
    );
}
