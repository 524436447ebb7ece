//! # quant-tables
//!
//! ggml's lookup tables (`ggml-common.h`), written once for every format that needs them:
//! the i-quant grids (`IQ2XXS_GRID` … `IQ1S_GRID`), the sign patterns `KSIGNS_IQ2XS` and
//! `KMASK_IQ2XS`, and the 16-value tables `KVALUES_IQ4NL` and `KVALUES_MXFP4`.
//!
//! They are data, not code: `scripts/gen-tables.py` generates them from gguf-py (PyPI `gguf`),
//! which carries the same tables, into `src/generated.rs` (these constants, for the CPU
//! references) and `kernels/<name>.inc` (one kernel-source fragment per table, declaring
//! `__device__ const qf_<name>[]`, for the GPU). A format's `KernelSpec` source is the fragments
//! it needs followed by its `kernel.hip` ([`kernel_source!`]); its kernel copies the tables into
//! shared memory once per launch (the skeleton's `init()` hook). A test re-runs the generator
//! against the installed gguf-py and fails if a checked-in table differs.
//!
//! Grid entries pack their values as ggml does: value `k` of entry `i` is byte `k`
//! (little-endian) of word `i`.
#![warn(missing_docs)]

mod generated;
pub use generated::*;

/// The kernel-source fragments of this crate, by table name (`"iq2xxs_grid"`): each declares
/// `__device__ const <type> qf_<name>[N]` after including `qf_portability.h`.
pub const KERNEL_FRAGMENTS: [(&str, &str); 10] = [
    ("iq2xxs_grid", include_str!("../kernels/iq2xxs_grid.inc")),
    ("iq2xs_grid", include_str!("../kernels/iq2xs_grid.inc")),
    ("iq2s_grid", include_str!("../kernels/iq2s_grid.inc")),
    ("iq3xxs_grid", include_str!("../kernels/iq3xxs_grid.inc")),
    ("iq3s_grid", include_str!("../kernels/iq3s_grid.inc")),
    ("iq1s_grid", include_str!("../kernels/iq1s_grid.inc")),
    ("ksigns_iq2xs", include_str!("../kernels/ksigns_iq2xs.inc")),
    ("kmask_iq2xs", include_str!("../kernels/kmask_iq2xs.inc")),
    ("kvalues_iq4nl", include_str!("../kernels/kvalues_iq4nl.inc")),
    ("kvalues_mxfp4", include_str!("../kernels/kvalues_mxfp4.inc")),
];

/// A format's kernel source: the named table fragments of this crate, then the format's own
/// `kernel.hip`, as one `&'static str` for its `KernelSpec`:
///
/// ```ignore
/// source: quant_tables::kernel_source!(["iq2xxs_grid", "ksigns_iq2xs"], "../kernel.hip"),
/// ```
///
/// The path of the kernel file is relative to the invoking file, as for `include_str!`.
#[macro_export]
macro_rules! kernel_source {
    ([$($table:literal),* $(,)?], $kernel:literal) => {
        concat!(
            $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../quant-tables/kernels/", $table, ".inc")),)*
            include_str!($kernel)
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_tables_are_gguf_pys() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let out = std::process::Command::new("python3")
            .arg(format!("{root}/scripts/gen-tables.py"))
            .arg("--check")
            .output()
            .expect("python3 runs (scripts/test.sh installs gguf-py)");
        assert!(
            out.status.success(),
            "the checked-in tables differ from gguf-py's (or gguf is not installed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn tables_have_ggml_shapes_and_known_entries() {
        assert_eq!(IQ2XXS_GRID[1], 0x0808_0808_0808_082b);
        assert_eq!(KMASK_IQ2XS, [1, 2, 4, 8, 16, 32, 64, 128]);
        // ksigns: bit 7 makes the number of set bits even.
        for (i, &s) in KSIGNS_IQ2XS.iter().enumerate() {
            assert_eq!(s & 0x7F, i as u8);
            assert_eq!(s.count_ones() % 2, 0);
        }
        assert_eq!(KVALUES_IQ4NL[0], -127);
        assert_eq!(KVALUES_MXFP4[15], -12);
        // The IQ1S grid holds only -1, 0 and 1.
        for w in IQ1S_GRID {
            assert!(w.to_le_bytes().iter().all(|&b| matches!(b, 0xff | 0 | 1)));
        }
        for (name, text) in KERNEL_FRAGMENTS {
            assert!(text.contains(&format!("qf_{name}[")), "{name}");
        }
    }
}
