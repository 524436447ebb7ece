//! ggml's Q2_0 format (being written).
