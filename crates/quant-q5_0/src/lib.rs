//! ggml's Q5_0 format (being written).
