//! The facade links every format its features enable, each id exactly once.

use quantforge::core::{registry, GgmlType};

#[test]
fn registry_holds_every_expected_format_once() {
    // The facade's default: every format ggml dequantizes (25 block formats) and the floats.
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
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
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
    // Every id ggml defines that is not here is one ggml cannot dequantize either.
    let unsupported: Vec<GgmlType> = GgmlType::all_known()
        .filter(|t| !t.is_removed() && !t.is_integer() && r.lookup(*t).is_none())
        .collect();
    assert_eq!(unsupported, [GgmlType::Q8_1, GgmlType::Q8_K]);
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
