//! ggml's Q6_K format for quantforge: layout, CPU reference and fast path, HIP/CUDA kernel
