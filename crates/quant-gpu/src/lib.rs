//! # quant-gpu
//!
//! The device side of quantforge, vendor-neutral: the [`Backend`] trait that the CUDA
//! (`quant-cuda`) and ROCm (`quant-rocm`) crates implement, opaque device [`Buffer`]s,
//! [`DeviceTensor`]s, and [`DeviceSpec`], the `--device` syntax of the CLI.
//!
//! This crate knows nothing of GGUF and nothing of any format's bytes: a kernel launch takes a
//! format's [`KernelSpec`] from the registry and runs it.
//!
//! Tensors leave for engines here: [`DeviceTensor::device_ptr`] and [`DeviceTensor::into_raw`]
//! (the allocation becomes the caller's), [`Backend::wrap_device_memory`] (the caller's memory as
//! a [`Buffer`] that never frees it) and [`Backend::make_stream_wait`] (the caller's stream
//! ordered after the loads).
//!
//! What every backend needs once is written here: [`plan_launch`] checks and sizes a kernel
//! launch from the spec (buffer ranges, offsets, alignment, grid), [`ModuleCache`] holds loaded
//! modules per key, and [`code_object`] reads cubin and HSACO files with every offset checked.
//! The CUDA and HIP backends themselves are written once too, as [`driver::GpuBackend`] over a
//! vendor's [`driver::Driver`] (the raw calls that differ between vendors).
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod backend;
pub mod bench;
mod buffer;
mod cache;
pub mod code_object;
mod device;
pub mod driver;
mod error;
mod lanes;
mod launch;
mod spec;
mod stage;
mod tensor;
#[doc(hidden)]
pub mod testing;

pub use backend::Backend;
pub use buffer::{Buffer, RawAllocation, RawBuffer};
pub use cache::{ContextModules, ModuleCache};
pub use device::{DeviceInfo, MemInfo};
pub use error::GpuError;
pub use lanes::Lanes;
pub use launch::{
    check_foreign_memory, plan_launch, BufferRegion, DeviceLimits, LaunchPlan, KERNEL_ALIGN,
    MAX_THREADS_PER_GROUP,
};
pub use quant_core::{KernelSpec, OutputDType};
pub use spec::{DeviceKind, DeviceSpec, DeviceSpecError};
pub use stage::{check_region, check_upload, Fence, HostBuffer, Queue, RawFence, RawHostBuffer};
pub use tensor::{DeviceTensor, RawDeviceTensor, TensorDType};
