//! The Backend trait of quantforge: devices, buffers, uploads, kernel launches, device tensors
