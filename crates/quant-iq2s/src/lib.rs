//! ggml's IQ2_S format (being written).
