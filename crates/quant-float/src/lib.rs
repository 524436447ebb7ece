//! ggml's plain float types (F32, F16, BF16) as quantforge formats
