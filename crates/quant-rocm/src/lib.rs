//! quantforge's AMD backend on hip-runtime-sys (HSACO code objects)
