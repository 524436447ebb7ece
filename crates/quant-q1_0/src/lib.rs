//! ggml's Q1_0 format (being written).
