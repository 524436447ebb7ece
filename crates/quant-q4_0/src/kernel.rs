//! The Q4_0 GPU kernels: `kernel.hip` beside this crate's `Cargo.toml`, one source for HIP and CUDA.

use quant_core::{BlockGeometry, KernelSpec};

/// Entry points and launch geometry of `kernel.hip`.
pub static KERNEL: KernelSpec = KernelSpec {
    format: "q4_0",
    file_name: "quant-q4_0/kernel.hip",
    source: include_str!("../kernel.hip"),
    entry_f32: "q4_0_to_fp32_kernel",
    entry_f16: "q4_0_to_fp16_kernel",
    entry_bf16: "q4_0_to_bf16_kernel",
    hsaco_env: "Q4_0_DEQUANT_HSACO",
    threads_per_group: 256,
    geometry: BlockGeometry {
        block_elems: crate::BLOCK_ELEMS,
        block_bytes: crate::BLOCK_BYTES,
    },
    blocks_per_group: 128,
};
