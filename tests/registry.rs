//! The facade links every format its features enable, each id exactly once.

use quantforge::core::{registry, GgmlType};

#[test]
fn registry_holds_every_expected_format_once() {
    let expected = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::BF16,
    ];
    let r = registry();
    r.require(&expected)
        .expect("every enabled format is linked and registered once");
    let mut ids = r.ids();
    ids.sort();
    let mut want = expected.to_vec();
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
