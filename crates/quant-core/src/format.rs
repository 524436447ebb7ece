//! The [`QuantFormat`] trait that every format crate implements, and the GPU kernel description
//! it may carry.

use crate::{BlockGeometry, GgmlType};

/// Element type a dequantizer produces, on the host or on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputDType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16, rounded to nearest-even from the f32 reference.
    F16,
    /// bfloat16, rounded to nearest-even from the f32 reference.
    Bf16,
}

impl OutputDType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            OutputDType::F32 => 4,
            OutputDType::F16 | OutputDType::Bf16 => 2,
        }
    }

    /// Lower-case name (`"f32"`, `"f16"`, `"bf16"`), as the CLI spells it.
    pub const fn name(self) -> &'static str {
        match self {
            OutputDType::F32 => "f32",
            OutputDType::F16 => "f16",
            OutputDType::Bf16 => "bf16",
        }
    }

    /// Parses a name, case-insensitively: the CLI's (`f32`, `f16`, `bf16`) or NumPy's and
    /// PyTorch's (`float32`, `float`, `float16`, `half`, `bfloat16`).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Some(Self::F32),
            "f16" | "float16" | "half" => Some(Self::F16),
            "bf16" | "bfloat16" => Some(Self::Bf16),
            _ => None,
        }
    }

    /// All three, in a fixed order.
    pub const ALL: [OutputDType; 3] = [OutputDType::F32, OutputDType::F16, OutputDType::Bf16];
}

impl std::fmt::Display for OutputDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A format's GPU kernels: one HIP/CUDA source and its entry points.
///
/// Every entry point has the same signature:
///
/// ```c
/// extern "C" __global__ void NAME(const uint8_t* src, OUT* dst, uint64_t n_blocks);
/// ```
///
/// where `OUT` is `float` for the f32 entry and `uint16_t` (raw bits) for f16 and bf16. `src`
/// holds `n_blocks` whole blocks back to back, `dst` receives `n_blocks * block_elems` values.
/// Both pointers must be 16-byte aligned (kernels load and store 16-byte vectors); device
/// allocations are, and backends launch at offsets that keep them so.
/// A backend launches `ceil(n_blocks / blocks_per_group)` groups of `threads_per_group` threads
/// (capped by the device's grid limit; kernels loop over groups with a grid stride).
#[derive(Debug)]
pub struct KernelSpec {
    /// Short lower-case format name (`"q4_k"`): the folder of its code objects built ahead of
    /// time, `target/kernels/<format>/<arch>.{hsaco,cubin}`.
    pub format: &'static str,
    /// File name of the source, for diagnostics (`"quant-q4k/kernel.hip"`).
    pub file_name: &'static str,
    /// The source. It includes `"qf_portability.h"` ([`crate::PORTABILITY_HEADER`]) and nothing else.
    pub source: &'static str,
    /// Entry point producing f32.
    pub entry_f32: &'static str,
    /// Entry point producing f16 bits.
    pub entry_f16: &'static str,
    /// Entry point producing bf16 bits.
    pub entry_bf16: &'static str,
    /// Threads per launched group (thread block). A multiple of 64, so that it fills whole
    /// wavefronts on AMD CDNA as well as whole warps elsewhere.
    pub threads_per_group: u32,
    /// Blocks of the format handled by one group.
    pub blocks_per_group: u32,
    /// Elements and bytes per block of the format the kernels decode: the same value as the
    /// format's [`QuantFormat::geometry`] (checked by [`crate::conformance::check_contract`]), so
    /// that a backend sizes buffers from the spec alone, without searching the registry.
    pub geometry: BlockGeometry,
}

/// Builds a format's [`KernelSpec`] whose entry points come from one `QF_DEQUANT_ENTRIES(PREFIX,
/// ...)` line of its `kernel.hip` (`PREFIX_to_fp32_kernel`, `_to_fp16_kernel`, `_to_bf16_kernel`);
/// the prefix is the format's name too:
///
/// ```ignore
/// pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
///     prefix: "q8_0", file: "quant-q8_0/kernel.hip", source: include_str!("../kernel.hip"),
///     threads: 256, blocks_per_group: 128,
///     geometry: (BLOCK_ELEMS, BLOCK_BYTES),
/// };
/// ```
#[macro_export]
macro_rules! kernel_spec {
    (
        prefix: $prefix:literal, file: $file:literal, source: $source:expr,
        threads: $threads:expr, blocks_per_group: $bpg:expr,
        geometry: ($elems:expr, $bytes:expr) $(,)?
    ) => {
        $crate::KernelSpec {
            format: $prefix,
            file_name: $file,
            source: $source,
            entry_f32: concat!($prefix, "_to_fp32_kernel"),
            entry_f16: concat!($prefix, "_to_fp16_kernel"),
            entry_bf16: concat!($prefix, "_to_bf16_kernel"),
            threads_per_group: $threads,
            blocks_per_group: $bpg,
            geometry: $crate::BlockGeometry {
                block_elems: $elems,
                block_bytes: $bytes,
            },
        }
    };
}

impl KernelSpec {
    /// Whether the source defines `entry`: literally, or through the shared skeleton's
    /// `QF_DEQUANT_ENTRIES(prefix, ...)` with `entry` = `prefix` + `_to_{fp32,fp16,bf16}_kernel`.
    pub fn source_defines(&self, entry: &str) -> bool {
        if self.source.contains(entry) {
            return true;
        }
        ["_to_fp32_kernel", "_to_fp16_kernel", "_to_bf16_kernel"]
            .iter()
            .filter_map(|suffix| entry.strip_suffix(suffix))
            .any(|prefix| {
                self.source.lines().any(|l| {
                    l.trim_start()
                        .strip_prefix("QF_DEQUANT_ENTRIES(")
                        .and_then(|rest| rest.split(',').next())
                        .is_some_and(|p| p.trim() == prefix)
                })
            })
    }

    /// Entry point for an output type.
    pub fn entry(&self, dtype: OutputDType) -> &'static str {
        match dtype {
            OutputDType::F32 => self.entry_f32,
            OutputDType::F16 => self.entry_f16,
            OutputDType::Bf16 => self.entry_bf16,
        }
    }

    /// Groups to launch for `n_blocks` blocks (at least 1).
    pub fn groups_for(&self, n_blocks: u64) -> u64 {
        n_blocks.div_ceil(self.blocks_per_group as u64).max(1)
    }
}

/// One quantization (or plain float) format of ggml, as a plugin.
///
/// Implementations live in their own crates (`quant-q4_0`, `quant-q4k`, ...) and register a
/// `'static` instance with [`crate::register_format!`]. Nothing outside a format crate knows its
/// bytes: readers, loaders and backends go through this trait, found in the
/// [registry](crate::registry()).
///
/// The two CPU methods may assume that `src` holds exactly `dst.len() / block_elems` blocks; the
/// checked entry points in [`crate::cpu`] verify that before calling them. Implementations must
/// still never panic or read out of bounds when handed mismatched slices (iterate with
/// `chunks_exact` and `zip`).
pub trait QuantFormat: Send + Sync + 'static {
    /// ggml type id of the format.
    fn ggml_type(&self) -> GgmlType;

    /// Human name, ggml's spelling (`"Q4_K"`).
    fn name(&self) -> &'static str;

    /// Elements and bytes per block.
    fn geometry(&self) -> BlockGeometry;

    /// The byte layout of one block, as Markdown (the same text the crate's docs draw).
    fn layout_doc(&self) -> &'static str;

    /// ggml's CPU dequantizer, operation for operation and in its order: the definition of
    /// correct output, bit for bit (sign of zero and NaN payloads included).
    fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]);

    /// A single-threaded fast path that must give exactly the reference's bits. The checked
    /// entry points in [`crate::cpu`] spread it over all cores.
    fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]);

    /// GPU kernels of the format, if it has them.
    fn kernel(&self) -> Option<&'static KernelSpec> {
        None
    }

    /// Byte offsets, within one block, of the block's f16 scale fields (ggml's `d`, `dmin`,
    /// `m`, ...), in the order of the block struct. Integer sub-scales are not listed: any bits
    /// are finite there. Tests force special values (NaN, Inf, subnormal) into these fields, and
    /// [`QuantFormat::make_scales_finite`] makes them realistic.
    fn f16_scale_offsets(&self) -> &'static [usize] {
        &[]
    }

    /// Turns whole blocks of random bytes into blocks whose every value is finite, with scales
    /// of a realistic magnitude (for synthetic models and benchmarks). The default rewrites each
    /// f16 scale field of [`QuantFormat::f16_scale_offsets`] with [`crate::finite_f16`]; a format
    /// whose scales are not f16 overrides it. A trailing partial block is left alone.
    fn make_scales_finite(&self, blocks: &mut [u8]) {
        let offsets = self.f16_scale_offsets();
        for block in blocks.chunks_exact_mut(self.geometry().block_bytes) {
            for &off in offsets {
                if let Some(field) = block.get_mut(off..off + 2) {
                    let h = crate::finite_f16(u16::from_le_bytes([field[0], field[1]]));
                    field.copy_from_slice(&h.to_le_bytes());
                }
            }
        }
    }
}

impl std::fmt::Debug for dyn QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantFormat({})", self.name())
    }
}

/// Defines a format crate's plugin in one place: the unit struct, its registered `static`
/// instance and its [`QuantFormat`] implementation, from the functions the crate writes itself
/// (the reference, the fast path) and its constants.
///
/// ```ignore
/// quant_core::define_format! {
///     /// ggml's Q8_0 format (type 8): blocks of 32 int8 quants sharing one f16 scale.
///     pub struct Q8_0Format;
///     /// The registered [`Q8_0Format`] instance.
///     pub static Q8_0;
///     ty: GgmlType::Q8_0, name: "Q8_0", geometry: (BLOCK_ELEMS, BLOCK_BYTES),
///     layout: LAYOUT_DOC, reference: reference, fast: fast,
///     kernel: Some(&kernel::KERNEL), f16_scales: &[0],
/// }
/// ```
///
/// A format whose scales are not f16 fields (E8M0, UE4M3, nibbles of other fields) lists the
/// f16 fields it has (maybe `&[]`) and adds `make_scales_finite: some_fn`, a
/// `fn(&mut [u8])` over whole blocks, to replace the trait's default.
#[macro_export]
macro_rules! define_format {
    (
        $(#[$smeta:meta])* $svis:vis struct $S:ident;
        $(#[$imeta:meta])* $ivis:vis static $I:ident;
        ty: $ty:expr, name: $name:literal, geometry: ($elems:expr, $bytes:expr),
        layout: $layout:expr, reference: $reference:expr, fast: $fast:expr,
        kernel: $kernel:expr, f16_scales: $scales:expr
        $(, make_scales_finite: $finite:expr)? $(,)?
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, Copy, Default)]
        $svis struct $S;

        $(#[$imeta])*
        $ivis static $I: $S = $S;

        $crate::register_format!($I);

        impl $crate::QuantFormat for $S {
            fn ggml_type(&self) -> $crate::GgmlType {
                $ty
            }
            fn name(&self) -> &'static str {
                $name
            }
            fn geometry(&self) -> $crate::BlockGeometry {
                $crate::BlockGeometry {
                    block_elems: $elems,
                    block_bytes: $bytes,
                }
            }
            fn layout_doc(&self) -> &'static str {
                $layout
            }
            fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
                $reference(src, dst)
            }
            fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
                $fast(src, dst)
            }
            fn kernel(&self) -> Option<&'static $crate::KernelSpec> {
                $kernel
            }
            fn f16_scale_offsets(&self) -> &'static [usize] {
                $scales
            }
            $(
                fn make_scales_finite(&self, blocks: &mut [u8]) {
                    $finite(blocks)
                }
            )?
        }
    };
}
