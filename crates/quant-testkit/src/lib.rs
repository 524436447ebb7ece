//! # quant-testkit
//!
//! What every format crate's tests check, written once. A format crate names it as a
//! dev-dependency and invokes [`format_suite!`] in its `src/tests.rs`; the suite then runs:
//!
//! * [`quant_core::conformance::check_contract`] (ids, registry, kernel spec, mismatched
//!   lengths, the fast path on every core);
//! * the crate's layout page equals `docs/formats/<format>.md`'s copy;
//! * fast path (dispatched and baseline builds) == reference, bit for bit, on random blocks and
//!   on blocks whose f16 scales ([`quant_core::QuantFormat::f16_scale_offsets`]) hold every
//!   special value (NaN with payloads, Inf, subnormals, signed zeros, extremes);
//! * [`golden::check_golden`]: every tensor of the format in `tests/data` gives exactly the bits
//!   of ggml's CPU dequantizer (the `.sha256` manifests), through the reference, the fast path
//!   and the multi-core entry point.
//!
//! A format adds only the hand-built blocks that pin down its own layout.
#![warn(missing_docs)]

pub mod golden;

use quant_core::conformance::{bits, paths, DequantFn, SPECIAL_F16};
use quant_core::{random_bytes, QuantFormat};

/// Blocks per random case: enough for every block layout of the fast path's loops.
const BLOCKS: usize = 64;

/// Asserts reference == fast (and baseline == dispatched) on `src`, naming `what` on failure.
pub fn assert_paths_agree(
    format: &dyn QuantFormat,
    baseline: Option<DequantFn>,
    src: &[u8],
    what: &str,
) {
    let (r, f) = paths(format, baseline, src);
    if let Some(i) = r.iter().zip(&f).position(|(a, b)| a != b) {
        panic!(
            "{} {what}: fast path differs from the reference at element {i}: {:#010x} vs {:#010x}",
            format.name(),
            f[i],
            r[i]
        );
    }
}

/// Fast path == reference on `cases` sets of random blocks (every bit pattern occurs).
pub fn random_blocks_agree(format: &dyn QuantFormat, baseline: Option<DequantFn>, cases: u64) {
    let bb = format.geometry().block_bytes;
    for seed in 0..cases {
        let n = 1 + (seed as usize * 7) % BLOCKS;
        let src = random_bytes(n * bb, 0x5EED_0000 + seed);
        assert_paths_agree(format, baseline, &src, &format!("random case {seed}"));
    }
}

/// Fast path == reference when every f16 scale field takes each special value in turn (the
/// other fields random), and with two different specials in two fields.
pub fn special_scales_agree(format: &dyn QuantFormat, baseline: Option<DequantFn>) {
    let bb = format.geometry().block_bytes;
    let offsets = format.f16_scale_offsets();
    assert!(
        offsets.iter().all(|&o| o + 2 <= bb),
        "{}: scale offsets {offsets:?} beyond a {bb}-byte block",
        format.name()
    );
    for (k, &off) in offsets.iter().enumerate() {
        for (s, &h) in SPECIAL_F16.iter().enumerate() {
            let mut src = random_bytes(8 * bb, 0xC0DE + (k * 100 + s) as u64);
            for (b, block) in src.chunks_exact_mut(bb).enumerate() {
                block[off..off + 2].copy_from_slice(&h.to_le_bytes());
                // The other scale fields: a second special value in odd blocks.
                if b % 2 == 1 {
                    let other = SPECIAL_F16[(s + b) % SPECIAL_F16.len()];
                    for &o in offsets.iter().filter(|&&o| o != off) {
                        block[o..o + 2].copy_from_slice(&other.to_le_bytes());
                    }
                }
            }
            assert_paths_agree(
                format,
                baseline,
                &src,
                &format!("scale at byte {off} = {h:#06x}"),
            );
        }
    }
}

/// `make_scales_finite` turns random bytes into blocks whose every value is finite.
pub fn made_finite_blocks_are_finite(format: &dyn QuantFormat) {
    let g = format.geometry();
    let mut src = random_bytes(256 * g.block_bytes, 0xF1);
    format.make_scales_finite(&mut src);
    let mut out = vec![0f32; 256 * g.block_elems];
    format.dequantize_reference(&src, &mut out);
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        panic!(
            "{}: element {i} of blocks made finite is {} ({:#010x})",
            format.name(),
            out[i],
            bits(&out[i..=i])[0]
        );
    }
    assert!(
        out.iter().any(|&v| v != out[0]),
        "{}: all values equal",
        format.name()
    );
}

/// The format suite: invoke it once in a format crate's `src/tests.rs`.
///
/// ```ignore
/// quant_testkit::format_suite! {
///     format: Q8_0,
///     baseline: Some(fast_baseline),
///     layout: LAYOUT_DOC,
///     docs_page: include_str!("../../../docs/formats/q8_0.md"),
///     golden: ["all-types.gguf:Q8_0.bytes", "tiny-llama-q8_0.gguf:"],
/// }
/// ```
///
/// `golden` lists substrings that must each match some checked `file:tensor`, so that the test
/// fails if the data it is meant to check went missing.
#[macro_export]
macro_rules! format_suite {
    (
        format: $format:expr,
        baseline: $baseline:expr,
        layout: $layout:expr,
        docs_page: $page:expr,
        golden: [$($must:literal),* $(,)?] $(,)?
    ) => {
        #[test]
        fn meets_the_format_contract() {
            quant_core::conformance::check_contract(&$format);
        }

        #[test]
        fn docs_page_carries_the_layout() {
            let page: &str = $page;
            let layout: &str = $layout;
            assert!(
                page.contains(layout.trim()),
                "docs/formats page of {} is out of date with its LAYOUT.md",
                quant_core::QuantFormat::name(&$format)
            );
        }

        #[test]
        fn fast_equals_reference_on_random_blocks() {
            $crate::random_blocks_agree(&$format, $baseline, 200);
        }

        #[test]
        fn fast_equals_reference_with_special_scales() {
            $crate::special_scales_agree(&$format, $baseline);
        }

        #[test]
        fn blocks_made_finite_dequantize_to_finite_values() {
            $crate::made_finite_blocks_are_finite(&$format);
        }

        #[test]
        fn golden_files_give_ggml_bits() {
            let checked = $crate::golden::check_golden(&$format);
            for must in [$($must),*] {
                assert!(
                    checked.iter().any(|c: &String| c.contains(must)),
                    "no golden tensor matching {must:?} was checked: {checked:?}"
                );
            }
        }
    };
}
