//! [`IntoCaller`]: a tensor's values into device memory the caller owns.

use std::time::Instant;

use quant_core::cpu::CpuPath;
use quant_gguf::TensorInfo;
use quant_gpu::{check_region, Backend, Buffer, GpuError, Queue, KERNEL_ALIGN};

use super::core::{is_kernel_failure, Core};
use crate::error::LoadError;
use crate::plan::{TensorPlan, Work};
use crate::report::{LoadPath, TensorLoad};

/// Writes tensors' values into a caller's buffer at an offset. The quantized bytes go up to a
/// scratch buffer that is freed before [`IntoCaller::load`] returns; the kernel runs on the
/// backend's compute queue, and `load` returns when it has finished. Nothing is cached.
pub(crate) struct IntoCaller<'a> {
    pub core: Core<'a>,
    pub backend: &'a dyn Backend,
}

impl IntoCaller<'_> {
    /// Checks the destination (offset a multiple of 16 bytes, the values inside `dst`) before
    /// anything is read or uploaded, then writes `t`'s values by `plan` at `dst[offset..]`.
    pub fn load(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
        dst: &mut Buffer,
        offset: usize,
    ) -> Result<TensorLoad, LoadError> {
        let start = Instant::now();
        let (core, b) = (&self.core, self.backend);
        check_destination(offset, plan.out_bytes as usize, dst.len())
            .map_err(|e| core.gpu_err(t, b, e))?;
        let bytes = core.read(t, &plan.spans)?;
        let (values, path) = match plan.work {
            Work::Kernel { spec, dtype, .. } => {
                let run = |dst: &mut Buffer| -> Result<(), GpuError> {
                    let mut src = b.alloc(bytes.len())?;
                    b.upload(&bytes, &mut src)?;
                    b.dequantize_at(
                        Queue::Compute,
                        spec,
                        &src,
                        0,
                        plan.blocks,
                        dst,
                        offset,
                        dtype,
                    )?;
                    b.synchronize()
                };
                match run(dst) {
                    Ok(()) => {
                        let row = (bytes.len() as u64, plan.out_bytes);
                        return Ok(core.row(t, plan, row, start.elapsed(), LoadPath::Kernel));
                    }
                    Err(e) if is_kernel_failure(&e) => core.fall_back(t, b, plan, &bytes, e)?,
                    Err(e) => return Err(core.gpu_err(t, b, e)),
                }
            }
            Work::Host { format, dtype, .. } => {
                let v = core.host_values(t, format, &bytes, dtype, plan.trim, CpuPath::Fast)?;
                (v.to_le_bytes(), plan.work.path())
            }
            Work::Copy { .. } => (bytes.into_owned(), plan.work.path()),
        };
        b.upload_at(&values, dst, offset)
            .map_err(|e| core.gpu_err(t, b, e))?;
        let row = (values.len() as u64, plan.out_bytes);
        Ok(core.row(t, plan, row, start.elapsed(), path))
    }
}

/// The destination's offset is a multiple of [`KERNEL_ALIGN`] and `len` bytes fit after it.
fn check_destination(offset: usize, len: usize, dst_len: usize) -> Result<(), GpuError> {
    let op = "dequantize_into";
    if offset % KERNEL_ALIGN != 0 {
        return Err(GpuError::Misaligned {
            op,
            offset,
            align: KERNEL_ALIGN,
        });
    }
    check_region(op, offset, len, dst_len)
}
