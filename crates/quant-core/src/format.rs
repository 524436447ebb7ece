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

    /// Parses the CLI spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "bf16" => Some(Self::Bf16),
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
    /// Environment variable that may name an HSACO code object built ahead of time
    /// (`"Q4_K_DEQUANT_HSACO"`).
    pub hsaco_env: &'static str,
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

impl KernelSpec {
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
}

impl std::fmt::Debug for dyn QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantFormat({})", self.name())
    }
}
