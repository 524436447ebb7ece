//! ggml's IQ3_XXS format (being written).
