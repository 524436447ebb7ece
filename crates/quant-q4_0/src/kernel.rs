//! The Q4_0 GPU kernels: `kernel.hip` beside this crate's `Cargo.toml`, one source for HIP and CUDA,
//! on the shared skeleton of `kernels/qf_portability.h`.

use quant_core::KernelSpec;

/// Entry points and launch geometry of `kernel.hip`.
pub static KERNEL: KernelSpec = quant_core::kernel_spec! {
    prefix: "q4_0", file: "quant-q4_0/kernel.hip", source: include_str!("../kernel.hip"),
    threads: 256, blocks_per_group: 256,
    geometry: (crate::BLOCK_ELEMS, crate::BLOCK_BYTES),
};
