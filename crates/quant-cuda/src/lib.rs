//! quantforge's NVIDIA backend on cudarc (dynamic loading, NVRTC)
