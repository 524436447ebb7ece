//! A raw GGUF byte builder shared by the reader's test binaries, so that tests can write what
//! the writer refuses to.
#![allow(dead_code)] // each test binary uses part of it

use quant_gguf::MetaType;

/// Little-endian GGUF bytes, built field by field.
#[derive(Clone)]
pub struct B(pub Vec<u8>);

impl B {
    /// Magic, `version`, tensor count and metadata count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> B {
        let mut b = B(b"GGUF".to_vec());
        b.u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A GGUF string: its length, then its bytes.
    pub fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    /// Array header: element type and claimed count.
    pub fn arr(&mut self, elem: MetaType, count: u64) -> &mut Self {
        self.u32(elem.id()).u64(count)
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(MetaType::U32.id()).u32(v)
    }
    pub fn kv_str(&mut self, key: &str, v: &[u8]) -> &mut Self {
        self.str(key.as_bytes()).u32(MetaType::String.id()).str(v)
    }
    /// A tensor info: name, dims, type id and offset.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zeros up to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> &mut Self {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}
