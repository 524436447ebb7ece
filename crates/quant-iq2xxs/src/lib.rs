//! ggml's IQ2_XXS format (being written).
