//! ggml's IQ1_M format (being written).
