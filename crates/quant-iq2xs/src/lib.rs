//! ggml's IQ2_XS format (being written).
