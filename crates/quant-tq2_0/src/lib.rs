//! ggml's TQ2_0 format (being written).
