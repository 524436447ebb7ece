//! GGUF v2/v3 reader (memmap2, zero-copy, hardened) and v3 writer; knows bytes, not formats
