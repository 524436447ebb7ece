//! ggml's Q2_K format (being written).
