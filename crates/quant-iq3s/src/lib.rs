//! ggml's IQ3_S format (being written).
