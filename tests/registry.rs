//! The facade links every format its features enable, each id exactly once.

use quantforge::core::{registry, GgmlType};

#[test]
fn registry_holds_every_expected_format_once() {
    // The facade's default: every format (the twelve quantized ones and the plain floats).
    let quantized = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q1_0,
        GgmlType::Q2_0,
    ];
    let floats = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::F64];
    let expected: Vec<GgmlType> = quantized.iter().chain(&floats).copied().collect();
    let r = registry();
    r.require(&expected)
        .expect("every enabled format is linked and registered once");
    let mut ids = r.ids();
    ids.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(ids, want, "registry holds exactly the enabled formats");
    for f in r.iter() {
        let g = f.geometry();
        assert_eq!(
            Some(g),
            f.ggml_type().geometry(),
            "{} geometry matches ggml's",
            f.name()
        );
        assert!(
            !f.layout_doc().is_empty(),
            "{} documents its layout",
            f.name()
        );
        if g.is_quantized() {
            let k = f
                .kernel()
                .unwrap_or_else(|| panic!("{} has a kernel", f.name()));
            assert!(
                k.source.contains("qf_portability.h"),
                "{} kernel includes the header",
                f.name()
            );
            assert!(
                !f.f16_scale_offsets().is_empty(),
                "{} says where its f16 scales are",
                f.name()
            );
            for dtype in quantforge::core::OutputDType::ALL {
                assert!(
                    k.source_defines(k.entry(dtype)),
                    "{} defines {}",
                    f.name(),
                    k.entry(dtype)
                );
            }
        }
    }
}
