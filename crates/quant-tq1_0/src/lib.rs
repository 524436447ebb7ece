//! ggml's TQ1_0 format (being written).
