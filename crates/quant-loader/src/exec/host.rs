//! [`Host`]: tensors into host memory with the fast CPU path (the load when there is no
//! device).

use std::time::Instant;

use quant_core::cpu::{CpuPath, HostValues};
use quant_gguf::TensorInfo;
use quant_gpu::TensorDType;

use super::core::Core;
use crate::error::LoadError;
use crate::plan::{TensorPlan, Work};
use crate::report::TensorLoad;

/// A tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Its contents.
    pub data: HostData,
    /// Dimensions, ggml order.
    pub shape: Vec<u64>,
    /// What it holds.
    pub dtype: TensorDType,
}

/// The contents of a [`HostTensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// Values, rounded to the asked type.
    Values(HostValues),
    /// Bytes as the file stores them: native blocks, or an integer tensor kept.
    Bytes(Vec<u8>),
}

impl HostTensor {
    /// The contents' little-endian bytes (a copy).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            HostData::Values(v) => v.to_le_bytes(),
            HostData::Bytes(b) => b.clone(),
        }
    }
}

/// Loads tensors into host memory.
pub struct Host<'a> {
    pub(crate) core: Core<'a>,
}

impl Host<'_> {
    /// Loads `t` by `plan` and reports it.
    pub(crate) fn load(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
    ) -> Result<(HostTensor, TensorLoad), LoadError> {
        let start = Instant::now();
        let bytes = self.core.read(t, &plan.spans)?;
        let data = match plan.work {
            Work::Host { format, dtype, .. } | Work::Kernel { format, dtype, .. } => {
                let v = self
                    .core
                    .host_values(t, format, &bytes, dtype, plan.trim, CpuPath::Fast);
                HostData::Values(v?)
            }
            Work::Copy { .. } => HostData::Bytes(bytes.into_owned()),
        };
        // Everything in host memory is produced here, kept bytes included.
        let row = self.core.row(
            t,
            plan,
            (0, plan.out_bytes),
            start.elapsed(),
            plan.work.path(),
        );
        let tensor = HostTensor {
            data,
            shape: plan.shape.clone(),
            dtype: plan.dtype,
        };
        Ok((tensor, row))
    }
}
