//! ggml's Q5_1 format (being written).
