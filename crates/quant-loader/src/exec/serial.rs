//! [`Serial`]: one tensor at a time onto a device (upload, kernel, synchronize).

use std::time::Instant;

use quant_core::cpu::CpuPath;
use quant_gguf::TensorInfo;
use quant_gpu::{Backend, Buffer, DeviceTensor, GpuError, KernelSpec, OutputDType};

use super::core::{is_kernel_failure, Core};
use crate::error::LoadError;
use crate::plan::{HostWhy, TensorPlan, Work};
use crate::report::{LoadPath, TensorLoad};

/// Loads tensors one at a time onto `backend`, each finished before the next starts.
pub(crate) struct Serial<'a> {
    pub core: Core<'a>,
    pub backend: &'a dyn Backend,
}

impl Serial<'_> {
    /// Loads `t` by `plan` and reports it.
    pub fn load(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
    ) -> Result<(DeviceTensor, TensorLoad), LoadError> {
        let start = Instant::now();
        let core = &self.core;
        let bytes = core.read(t, &plan.spans)?;
        let read = bytes.len() as u64;
        let (buffer, uploaded, path) = match plan.work {
            Work::Copy { .. } => (self.upload(t, &bytes, false)?, read, plan.work.path()),
            Work::Host { format, dtype, why } => {
                let values =
                    core.host_values(t, format, &bytes, dtype, plan.trim, CpuPath::Fast)?;
                let values = values.to_le_bytes();
                let pageable = why == HostWhy::Baseline;
                let buffer = self.upload(t, &values, pageable)?;
                (buffer, values.len() as u64, plan.work.path())
            }
            Work::Kernel { spec, dtype, .. } => match self.expand(spec, dtype, plan, &bytes) {
                Ok(buffer) => (buffer, read, plan.work.path()),
                Err(e) if is_kernel_failure(&e) => self.fall_back(t, plan, &bytes, e)?,
                Err(e) => return Err(core.gpu_err(t, self.backend, e)),
            },
        };
        Ok(self.made(t, plan, buffer, uploaded, path, start.elapsed()))
    }

    /// A kernel of `plan` could not run (`e`): the one fallback's values of `bytes`, uploaded,
    /// with the bytes uploaded and the path that says why.
    pub fn fall_back(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
        bytes: &[u8],
        e: GpuError,
    ) -> Result<(Buffer, u64, LoadPath), LoadError> {
        let (values, path) = self.core.fall_back(t, self.backend, plan, bytes, e)?;
        let buffer = self.upload(t, &values, false)?;
        Ok((buffer, values.len() as u64, path))
    }

    /// The tensor `plan` made in `buffer`, and its report row (a copy produces nothing; any
    /// other work its output).
    pub fn made(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
        buffer: Buffer,
        uploaded: u64,
        path: LoadPath,
        time: std::time::Duration,
    ) -> (DeviceTensor, TensorLoad) {
        let produced = match plan.work {
            Work::Copy { .. } => 0,
            _ => plan.out_bytes,
        };
        let row = self.core.row(t, plan, (uploaded, produced), time, path);
        let tensor = DeviceTensor {
            buffer,
            shape: plan.shape.clone(),
            dtype: plan.dtype,
        };
        (tensor, row)
    }

    /// Uploads `bytes` (through pinned staging, or from pageable memory) into a new buffer and
    /// waits for it.
    pub fn upload(
        &self,
        t: &TensorInfo,
        bytes: &[u8],
        pageable: bool,
    ) -> Result<Buffer, LoadError> {
        let b = self.backend;
        let run = || -> Result<Buffer, GpuError> {
            let mut dst = b.alloc(bytes.len())?;
            if pageable {
                b.upload_pageable(bytes, &mut dst)?;
            } else {
                b.upload(bytes, &mut dst)?;
            }
            b.synchronize()?;
            Ok(dst)
        };
        run().map_err(|e| self.core.gpu_err(t, b, e))
    }

    /// Uploads the blocks, expands them with `spec` to `dtype` into a new buffer and waits.
    fn expand(
        &self,
        spec: &'static KernelSpec,
        dtype: OutputDType,
        plan: &TensorPlan,
        bytes: &[u8],
    ) -> Result<Buffer, GpuError> {
        let b = self.backend;
        let mut src = b.alloc(bytes.len())?;
        b.upload(bytes, &mut src)?;
        let mut dst = b.alloc(plan.out_bytes as usize)?;
        b.dequantize(spec, &src, plan.blocks, &mut dst, dtype)?;
        b.synchronize()?;
        Ok(dst)
    }
}
