//! ggml's Q4_0 format for quantforge: layout, CPU reference and fast path, HIP/CUDA kernel
