//! ggml's NVFP4 format (being written).
