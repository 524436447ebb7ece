//! ggml's IQ4_NL format (being written).
