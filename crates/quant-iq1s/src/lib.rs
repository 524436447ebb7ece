//! ggml's IQ1_S format (being written).
