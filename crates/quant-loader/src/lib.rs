//! GgufLoader: GGUF reader + format registry + backend -> device tensors or host f32
