//! ggml's IQ4_XS format (being written).
