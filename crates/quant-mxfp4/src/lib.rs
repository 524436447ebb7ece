//! ggml's MXFP4 format (being written).
