//! The golden check: every F32, F16 and BF16 tensor of every file in `tests/data` dequantizes to
//! the sha256 llama.cpp's f32 output has (reference, fast and multi-core paths).

mod common;

use common::gguf_walk::check_golden;

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

#[test]
fn walker_rejects_truncated_headers() {
    use common::gguf_walk::Gguf;
    let path = common::gguf_walk::data_dir().join("all-types.gguf");
    let full = std::fs::read(&path).unwrap();
    let whole = Gguf::parse(&path, full.clone()).unwrap();
    assert!(!whole.tensors.is_empty());
    // Cut inside the header: every cut must be an error, never a panic or a bogus success.
    let header_end = whole.data_start.min(full.len());
    for cut in (0..header_end).step_by(7) {
        let parsed = Gguf::parse(&path, full[..cut].to_vec());
        let header_len = parsed.as_ref().map(|g| g.data_start).unwrap_or(0);
        assert!(parsed.is_err() || header_len > cut, "cut at {cut} parsed");
    }
}
