pub mod gguf_walk;
