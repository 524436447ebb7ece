//! ggml's Q5_K format (being written).
