//! ggml's Q4_1 format (being written).
