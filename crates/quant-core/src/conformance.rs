//! A conformance check that every format crate runs in its own tests, so that what holds for
//! all formats is written once.

use crate::cpu::{self, CpuPath};
use crate::{random_bytes, registry, QuantFormat};

/// f16 bit patterns that stress a scale: NaNs (signalling, quiet, negative, with payloads),
/// infinities, subnormals, signed zeros and the extremes of the finite range.
pub const SPECIAL_F16: [u16; 17] = [
    0x7C01, 0x7E00, 0x7FFF, 0xFC01, 0xFE00, 0x7D55, 0x7C00, 0xFC00, 0x0001, 0x03FF, 0x8001, 0x83FF,
    0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x0400,
];

/// The bits of f32 values, for exact comparisons that see the sign of zero and NaN payloads.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A dequantizer over whole blocks, as a plain function.
pub type DequantFn = fn(&[u8], &mut [f32]);

/// Reference and fast outputs (as bits) of the whole blocks in `src`. `baseline` is the format's
/// fast path built for the baseline instruction set (the second function
/// [`crate::block_fast_path!`] defines); the dispatched fast path (AVX2 on most x86 machines) must
/// give its bits, which this asserts. Formats without such a build pass `None`.
pub fn paths(
    format: &dyn QuantFormat,
    baseline: Option<DequantFn>,
    src: &[u8],
) -> (Vec<u32>, Vec<u32>) {
    let g = format.geometry();
    let n = src.len() / g.block_bytes * g.block_elems;
    let mut r = vec![0f32; n];
    let mut f = vec![0f32; n];
    format.dequantize_reference(src, &mut r);
    format.dequantize_fast(src, &mut f);
    if let Some(baseline) = baseline {
        let mut b = vec![0f32; n];
        baseline(src, &mut b);
        assert_eq!(
            bits(&f),
            bits(&b),
            "{}: dispatched and baseline fast paths differ",
            format.name()
        );
    }
    (bits(&r), bits(&f))
}

/// Checks what every format must satisfy, panicking with a message on the first failure:
///
/// * its id, name and geometry are ggml's ([`crate::GgmlType`]);
/// * the global registry holds this very instance for its id, once;
/// * its kernel spec, if any, names its format, defines every entry point in its source and
///   carries the format's block geometry;
/// * mismatched slice lengths never panic, and the checked entry point rejects them;
/// * the fast path on every core gives the reference's bits on a few thousand blocks of
///   pseudo-random bytes (every scale pattern, NaN and Inf included).
pub fn check_contract(format: &'static dyn QuantFormat) {
    let name = format.name();
    let ty = format.ggml_type();
    let g = format.geometry();
    assert_eq!(
        ty.name(),
        Some(name),
        "{name}: ggml names id {} differently",
        ty.0
    );
    assert_eq!(
        ty.geometry(),
        Some(g),
        "{name}: geometry differs from ggml's"
    );

    let reg = registry();
    reg.validate().expect("no id registered twice");
    let found = reg
        .get(ty)
        .unwrap_or_else(|e| panic!("{name} is not registered: {e}"));
    assert!(
        std::ptr::addr_eq(
            found as *const dyn QuantFormat,
            format as *const dyn QuantFormat
        ),
        "{name}: the registry holds another instance for id {}",
        ty.0
    );
    assert!(
        !format.layout_doc().trim().is_empty(),
        "{name}: no layout doc"
    );

    if let Some(k) = format.kernel() {
        assert_eq!(
            k.format,
            name.to_ascii_lowercase(),
            "{name}: kernel folder name"
        );
        assert!(
            k.source.contains(crate::PORTABILITY_HEADER_NAME),
            "{name}: header not included"
        );
        for dtype in crate::OutputDType::ALL {
            assert!(
                k.source_defines(k.entry(dtype)),
                "{name}: {} not in source",
                k.entry(dtype)
            );
        }
        assert!(
            k.threads_per_group % 64 == 0,
            "{name}: threads not a multiple of 64"
        );
        assert!(k.blocks_per_group > 0, "{name}: blocks_per_group is 0");
        // A source that sizes its groups with a `#define <NAME>_BPG <N>u` default must agree
        // with the spec the backends launch by.
        for (macro_name, value) in bpg_defaults(k.source) {
            assert_eq!(
                value, k.blocks_per_group,
                "{name}: the source's {macro_name} is {value}, the spec's blocks_per_group {}",
                k.blocks_per_group
            );
        }
        assert_eq!(
            k.geometry, g,
            "{name}: the kernel spec's block geometry differs from the format's"
        );
    }

    // Mismatched lengths: a partial trailing block, too few and too many outputs.
    let src = random_bytes(g.block_bytes * 3 + g.block_bytes / 2 + 1, 7);
    let mut small = vec![0f32; g.block_elems + g.block_elems / 2 + 1];
    let mut big = vec![0f32; g.block_elems * 5];
    format.dequantize_reference(&src, &mut small);
    format.dequantize_fast(&src, &mut small);
    format.dequantize_reference(&src, &mut big);
    format.dequantize_fast(&src, &mut big);
    assert!(
        cpu::dequantize(format, &src, &mut big, CpuPath::Fast).is_err(),
        "{name}"
    );
    assert!(
        cpu::dequantize(format, &src, &mut big, CpuPath::Reference).is_err(),
        "{name}"
    );

    // Fast on every core == reference, over more than one rayon task.
    let n_blocks = (3 << 16) / g.block_elems + 1;
    let src = random_bytes(n_blocks * g.block_bytes, 0x2545 + ty.0 as u64);
    let r = cpu::dequantize_to_vec(format, &src, CpuPath::Reference).unwrap();
    let f = cpu::dequantize_to_vec(format, &src, CpuPath::Fast).unwrap();
    assert_eq!(r.len(), n_blocks * g.block_elems);
    if let Some(i) = r
        .iter()
        .zip(&f)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!(
            "{name}: fast differs from reference at {i}: {:#x} vs {:#x}",
            f[i].to_bits(),
            r[i].to_bits()
        );
    }
}

/// The `#define <NAME>_BPG <N>[u]` lines of a kernel source, as (name, N).
fn bpg_defaults(source: &str) -> Vec<(&str, u32)> {
    source
        .lines()
        .filter_map(|l| {
            let mut w = l.trim_start().strip_prefix("#define")?.split_whitespace();
            let name = w.next().filter(|n| n.ends_with("_BPG"))?;
            let value = w.next()?.trim_end_matches(['u', 'U']).parse().ok()?;
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::bpg_defaults;

    #[test]
    fn bpg_defaults_are_read_from_define_lines_only() {
        let src = "#ifndef Q9_BPG  // tuning\n#define Q9_BPG 32u  // keep in sync\n\
                   #define Q9_BB 144u\n  #define OTHER_BPG 7\nconst int x = Q9_BPG;\n";
        assert_eq!(bpg_defaults(src), vec![("Q9_BPG", 32), ("OTHER_BPG", 7)]);
        assert!(bpg_defaults("#define Q9_BPG many\n").is_empty());
    }
}
