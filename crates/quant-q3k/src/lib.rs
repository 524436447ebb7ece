//! ggml's Q3_K format (being written).
