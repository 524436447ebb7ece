//! Helpers shared by quantforge's cross-crate tests: where the test data lives and how to read
//! the golden `.sha256` manifests.
