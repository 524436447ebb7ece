//! Blocks a caller already holds, with no file: expanded on the host, or on the device from the
//! caller's device memory into the caller's device memory (the primitive of a dequantize op
//! inside a model's forward pass).
//!
//! Both go through the planner ([`Target::Host`], [`Target::DeviceBlocks`]), so the sizes are
//! checked against the format's geometry before anything runs. The device path reads and writes
//! only the caller's memory: nothing goes through the host, nothing is allocated, and nothing
//! is cached per call (the format's kernel module is loaded once per device context, on the
//! first call).
//!
//! What the device path refuses, rather than copying (each with [`LoadError::Blocks`] saying
//! what was expected and what came):
//! - a source or destination address that is not a multiple of 16 bytes (the kernels read and
//!   write 16-byte vectors): a row of Q6_K blocks (210 bytes) or a sub-view of an output can be
//!   such; copy it to an aligned buffer first (the Python op does);
//! - a source and destination that overlap;
//! - memory that is not the backend's device's, or shorter than the sizes say.
//!
//! Zero elements are accepted and do nothing.

use quant_core::cpu::{self, CpuPath};
use quant_core::{GgmlType, OutputDType};
use quant_gpu::Backend;

use crate::error::LoadError;
use crate::options::LoadAs;
use crate::plan::{self, Target, TensorPlan, Work};

/// The planned expansion of `elements` values of type `ty` held as `src_len` bytes of blocks.
fn plan_blocks(
    ty: GgmlType,
    elements: u64,
    src_len: usize,
    dtype: OutputDType,
    target: Target,
) -> Result<TensorPlan, LoadError> {
    let err = |reason: String| LoadError::Blocks { ty, reason };
    let plan = plan::plan(ty, &[elements], LoadAs::Values(dtype), None, target)
        .map_err(|e| err(e.to_string()))?;
    if let Work::Copy { .. } = plan.work {
        return Err(err(plan::PlanError::Integer(ty).to_string()));
    }
    let g = plan.geometry;
    if elements % g.block_elems as u64 != 0 {
        return Err(err(format!(
            "{elements} values are not whole blocks of {}",
            g.block_elems
        )));
    }
    if plan.spans.total() != src_len as u64 {
        return Err(err(format!(
            "{elements} values take {} bytes ({} blocks of {}), not {src_len}",
            plan.spans.total(),
            plan.blocks,
            g.block_bytes
        )));
    }
    Ok(plan)
}

/// Expands `src`, blocks of type `ty` holding `elements` values, into `dst` as the
/// little-endian bytes of `dtype` values, with the fast CPU path on all cores. `dst` must hold
/// exactly those bytes.
pub fn dequantize_host_blocks(
    ty: GgmlType,
    elements: u64,
    src: &[u8],
    dtype: OutputDType,
    dst: &mut [u8],
) -> Result<(), LoadError> {
    let plan = plan_blocks(ty, elements, src.len(), dtype, Target::Host)?;
    let err = |reason: String| LoadError::Blocks { ty, reason };
    if plan.out_bytes != dst.len() as u64 {
        return Err(err(format!(
            "{elements} values as {dtype} take {} bytes; the output has {}",
            plan.out_bytes,
            dst.len()
        )));
    }
    let format = plan::value_format(ty).map_err(|e| err(e.to_string()))?;
    cpu::dequantize_into_bytes(format, src, dst, dtype, CpuPath::Fast)
        .map_err(|e| err(e.to_string()))
}

/// Where blocks on a device come from and go to: device addresses and byte lengths.
#[derive(Clone, Copy, Debug)]
pub struct DeviceBlocks {
    /// Address of the blocks.
    pub src: u64,
    /// Bytes of blocks.
    pub src_len: usize,
    /// Address the values go to.
    pub dst: u64,
    /// Bytes there.
    pub dst_len: usize,
}

/// Expands blocks of type `ty` holding `elements` values at `mem.src` into `mem.dst` as `dtype`
/// values, on `backend`'s device, queued on `stream` (the caller's CUDA or HIP stream handle, as
/// [`Backend::dequantize_on_stream`] takes it), without waiting for it. See the module's doc
/// for what is refused.
///
/// # Safety
/// Both ranges must stay allocated, and not be written by other work, until the kernel queued
/// on `stream` has run; `stream` must be a live stream of the backend's device context.
pub unsafe fn dequantize_device_blocks(
    backend: &dyn Backend,
    ty: GgmlType,
    elements: u64,
    mem: DeviceBlocks,
    dtype: OutputDType,
    stream: usize,
) -> Result<(), LoadError> {
    let plan = plan_blocks(ty, elements, mem.src_len, dtype, Target::DeviceBlocks)?;
    let err = |reason: String| LoadError::Blocks { ty, reason };
    check_device_memory(&plan, &mem).map_err(err)?;
    let Work::Kernel { spec, .. } = plan.work else {
        return Err(err("no kernel was planned".into()));
    };
    if plan.blocks == 0 {
        return Ok(());
    }
    let label = |e| err(format!("on {}: {e}", backend.info().label()));
    // SAFETY: forwarded from this function's contract; the backend checks both ranges against
    // the driver's allocations.
    unsafe {
        let src = backend
            .wrap_device_memory(mem.src, mem.src_len)
            .map_err(label)?;
        let mut dst = backend
            .wrap_device_memory(mem.dst, mem.dst_len)
            .map_err(label)?;
        backend
            .dequantize_on_stream(spec, &src, plan.blocks, &mut dst, dtype, stream)
            .map_err(label)
    }
}

/// The destination holds the values, both addresses are 16-byte aligned, and the ranges do
/// not overlap.
fn check_device_memory(plan: &TensorPlan, mem: &DeviceBlocks) -> Result<(), String> {
    if plan.out_bytes > mem.dst_len as u64 {
        return Err(format!(
            "the values take {} bytes; the output has {}",
            plan.out_bytes, mem.dst_len
        ));
    }
    for (what, addr) in [("blocks", mem.src), ("output", mem.dst)] {
        if addr % quant_gpu::KERNEL_ALIGN as u64 != 0 {
            return Err(format!(
                "the {what} start at {addr:#x}, not a multiple of {} bytes; copy them to an \
                 aligned buffer",
                quant_gpu::KERNEL_ALIGN
            ));
        }
    }
    let (s, d) = (mem.src as u128, mem.dst as u128);
    let (s_end, d_end) = (s + mem.src_len as u128, d + plan.out_bytes as u128);
    if s < d_end && d < s_end && plan.out_bytes > 0 && mem.src_len > 0 {
        return Err(format!(
            "the blocks [{s:#x}, {s_end:#x}) and the output [{d:#x}, {d_end:#x}) overlap"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
