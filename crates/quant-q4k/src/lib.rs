//! ggml's Q4_K format for quantforge: layout, CPU reference and fast path, HIP/CUDA kernel
