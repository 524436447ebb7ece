//! [`LoadReport`]: what a load did, per tensor and in total.

use std::time::Duration;

use quant_core::GgmlType;
use quant_gpu::TensorDType;

/// How one tensor reached its destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadPath {
    /// Quantized bytes uploaded and expanded by the format's kernel on the device.
    Kernel,
    /// The format has no kernel by design (plain float types): converted on the host, uploaded.
    HostConvert,
    /// The kernel could not run; the CPU reference ran and its result was uploaded. The string
    /// says why the kernel failed.
    Fallback(String),
    /// Dequantized on the CPU into host memory (no device).
    Cpu,
    /// Served from a [`TensorCache`](crate::TensorCache).
    Cached,
    /// The quantized blocks were copied to the device untouched (`--dtype native`).
    Native,
    /// The baseline strategy: dequantized on the CPU, uploaded from pageable memory.
    CpuDequant,
    /// Read and copied through the pipeline's ring with nothing else
    /// ([`GgufLoader::bare_copy`](crate::GgufLoader::bare_copy)): no tensor was made.
    BareCopy,
    /// An integer tensor (I8, I16, I32, I64: indices or ids, not weights) kept as it is: its
    /// bytes copied to the device or into host memory unchanged, whatever values were asked
    /// for. Its [`TensorLoad::dtype`] is [`TensorDType::Native`] of its type.
    Kept,
}

impl LoadPath {
    /// Short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            LoadPath::Kernel => "kernel",
            LoadPath::HostConvert => "host",
            LoadPath::Fallback(_) => "FALLBACK",
            LoadPath::Cpu => "cpu",
            LoadPath::Cached => "cached",
            LoadPath::Native => "native",
            LoadPath::CpuDequant => "cpu-dequant",
            LoadPath::Kept => "kept",
            LoadPath::BareCopy => "bare-copy",
        }
    }
}

/// One tensor's load.
#[derive(Clone, Debug)]
pub struct TensorLoad {
    /// Tensor name.
    pub name: String,
    /// Its type in the file.
    pub ty: GgmlType,
    /// Dimensions, ggml order.
    pub shape: Vec<u64>,
    /// What the device tensor holds (values of a type, or the native blocks).
    pub dtype: TensorDType,
    /// Bytes sent to the device (quantized bytes, or converted values on the host paths).
    pub bytes_uploaded: u64,
    /// Bytes of output produced.
    pub bytes_produced: u64,
    /// Wall time of the load. Serial paths synchronise with the device per tensor; in the
    /// pipeline it runs from the first read of the tensor's bytes to the queueing of its last
    /// piece (the report's total is synchronised).
    pub time: Duration,
    /// How it was done.
    pub path: LoadPath,
}

/// Totals over a load.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Where the tensors went (`"cuda:0 NVIDIA H100 ..."` or `"cpu"`).
    pub device: String,
    /// Each tensor, in file order.
    pub tensors: Vec<TensorLoad>,
    /// Wall time of the whole load.
    pub total_time: Duration,
}

impl LoadReport {
    /// Bytes sent to the device in all.
    pub fn bytes_uploaded(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes_uploaded).sum()
    }
    /// Bytes produced in all.
    pub fn bytes_produced(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes_produced).sum()
    }
    /// Number of tensors that fell back to the CPU because their kernel could not run.
    pub fn fallbacks(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| matches!(t.path, LoadPath::Fallback(_)))
            .count()
    }
    /// Number of integer tensors kept as they are ([`LoadPath::Kept`]).
    pub fn kept(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| t.path == LoadPath::Kept)
            .count()
    }
    /// Bytes uploaded plus produced per second of wall time, in GB/s.
    pub fn gbytes_per_s(&self) -> f64 {
        let secs = self.total_time.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            (self.bytes_uploaded() + self.bytes_produced()) as f64 / secs / 1e9
        }
    }
}

/// What a whole-model load returns: the tensors, and the report with one row per tensor
/// (`tensors[i]` is the tensor of `report.tensors[i]`), in the order asked.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The tensors.
    pub tensors: Vec<T>,
    /// What was done.
    pub report: LoadReport,
}

impl<T> Loaded<T> {
    /// The tensor named `name`, if it was loaded.
    pub fn get(&self, name: &str) -> Option<&T> {
        let i = self.report.tensors.iter().position(|r| r.name == name)?;
        self.tensors.get(i)
    }

    /// Each tensor with its name, in order.
    pub fn into_named(self) -> impl Iterator<Item = (String, T)> {
        let names = self.report.tensors.into_iter().map(|r| r.name);
        names.zip(self.tensors)
    }
}
