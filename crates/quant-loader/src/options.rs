//! What a caller asks of a load: [`LoadAs`] (values of a type, or the native blocks), the
//! [`Strategy`] and [`PipelineOptions`] of a whole-model load, and the [`LoaderOptions`] of a
//! file. Plain data: nothing here decides how a tensor is loaded (that is the planner's job).

use quant_core::OutputDType;

use crate::report::TensorLoad;

/// What to put on the device (or in host memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadAs {
    /// Dequantized values of this type.
    Values(OutputDType),
    /// The file's blocks untouched ([`TensorDType::Native`](quant_gpu::TensorDType::Native)).
    Native,
}

impl LoadAs {
    /// Parses a dtype's name: `native`, or any spelling [`OutputDType::from_name`] accepts
    /// (`f32`, `float32`, `f16`, `half`, `bf16`, …), case-insensitively.
    pub fn from_name(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("native") {
            return Some(LoadAs::Native);
        }
        OutputDType::from_name(s).map(LoadAs::Values)
    }

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            LoadAs::Values(d) => d.name(),
            LoadAs::Native => "native",
        }
    }
}

impl From<OutputDType> for LoadAs {
    fn from(d: OutputDType) -> Self {
        LoadAs::Values(d)
    }
}

impl std::fmt::Display for LoadAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do when a format's kernel cannot run on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// Dequantize with the CPU reference and upload the result; warn and count it.
    #[default]
    Allow,
    /// Fail the load.
    Deny,
}

/// Options of [`GgufLoader::open_with`](crate::GgufLoader::open_with).
#[derive(Clone, Copy, Debug)]
pub struct LoaderOptions {
    /// Map the file (`true`, zero-copy) or read it with ordinary positioned reads (`false`,
    /// the default). Unmapped, only the header is read on open and tensor bytes are read on
    /// demand, into the pipeline's staging slots or, on the CPU paths, one tensor at a time; a
    /// file truncated by another process gives a short read, an error naming the tensor. A
    /// mapped file truncated under a load raises SIGBUS on the lost pages, which kills the
    /// process: map only files that nothing else rewrites.
    pub mmap: bool,
    /// Kernel fallback policy.
    pub fallback: FallbackPolicy,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            mmap: false,
            fallback: FallbackPolicy::Allow,
        }
    }
}

/// How [`GgufLoader::load_with`](crate::GgufLoader::load_with) moves a model to a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Through a ring of pinned staging slots, each reader's copies and kernels on a queue of its own
    /// ([`Queue::Lane`](quant_gpu::Queue::Lane)), overlapping one another,
    /// where the backend has the primitives ([`Backend::async_primitives`]), else
    /// [`Strategy::Serial`].
    ///
    /// [`Backend::async_primitives`]: quant_gpu::Backend::async_primitives
    #[default]
    Pipelined,
    /// Tensor by tensor: upload, kernel, synchronize.
    Serial,
    /// A baseline: dequantize on the CPU, convert to the output type, and upload the values
    /// from ordinary memory ([`Backend::upload_pageable`](quant_gpu::Backend::upload_pageable)),
    /// tensor by tensor.
    CpuDequant,
}

impl Strategy {
    /// Parses the CLI spelling: `pipelined`, `serial`, `cpu-dequant`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "pipelined" => Some(Strategy::Pipelined),
            "serial" => Some(Strategy::Serial),
            "cpu-dequant" => Some(Strategy::CpuDequant),
            _ => None,
        }
    }
}

/// Options of [`GgufLoader::load_with`](crate::GgufLoader::load_with).
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// Strategy.
    pub strategy: Strategy,
    /// Ring slots in all (at least 1), shared out among the readers; there are at most as many
    /// readers as slots. Two slots per reader let it fill one while the other's copy is in
    /// flight.
    pub ring_slots: usize,
    /// Bytes per ring slot, host and device. A slot must hold at least one block.
    pub slot_bytes: usize,
    /// Reader threads, each filling its own slots from the file and issuing them.
    pub readers: usize,
    /// Fill host slots with positioned reads (`pread`) of the file even when it is mapped,
    /// instead of copying out of the mapping. A file opened without a mapping is always read
    /// this way.
    pub direct_reads: bool,
}

impl Default for PipelineOptions {
    /// Readers on half the cores, at most 8 (the copy engine needs host memory bandwidth too,
    /// and the allocator and progress threads a core), two slots of 2 MiB each per reader (a
    /// 2 MiB copy takes tens of microseconds, well above the cost of issuing it). The figures
    /// behind these choices are in docs/performance.md.
    fn default() -> Self {
        let readers = std::thread::available_parallelism()
            .map(|n| (n.get() / 2).clamp(1, 8))
            .unwrap_or(4);
        PipelineOptions {
            strategy: Strategy::Pipelined,
            ring_slots: 2 * readers,
            slot_bytes: 2 << 20,
            readers,
            direct_reads: false,
        }
    }
}

impl PipelineOptions {
    /// Device memory the ring takes at most, in bytes.
    pub fn ring_bytes(&self) -> u64 {
        (self.ring_slots as u64).saturating_mul(self.slot_bytes as u64)
    }
}

/// Progress of a load, reported as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// This many more bytes of the file were read and queued for the device.
    Bytes(u64),
    /// A tensor is done.
    Tensor(&'a TensorLoad),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_as_and_strategy_parse_their_spellings() {
        assert_eq!(LoadAs::from_name("native"), Some(LoadAs::Native));
        assert_eq!(
            LoadAs::from_name("BF16"),
            Some(LoadAs::Values(OutputDType::Bf16))
        );
        assert_eq!(LoadAs::from_name("q4"), None);
        assert_eq!(
            Strategy::from_name("cpu-dequant"),
            Some(Strategy::CpuDequant)
        );
        assert_eq!(Strategy::from_name("fast"), None);
    }
}
