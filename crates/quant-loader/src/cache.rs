//! [`TensorCache`]: an opt-in cache of single-tensor loads, for callers that ask for the same
//! tensor again (an interactive tool, a test). Whole-model loads never use it: they return
//! their tensors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use quant_gpu::{Backend, DeviceKind, DeviceTensor};

use crate::error::LoadError;
use crate::options::LoadAs;
use crate::report::{LoadPath, TensorLoad};

type Key = (String, LoadAs, DeviceKind, usize);

/// Device tensors by name, output and device.
#[derive(Default)]
pub struct TensorCache {
    /// Each tensor with the row of the load that made it.
    map: Mutex<HashMap<Key, (Arc<DeviceTensor>, TensorLoad)>>,
}

fn key(name: &str, as_: LoadAs, backend: &dyn Backend) -> Key {
    let info = backend.info();
    (name.to_string(), as_, info.kind, info.ordinal)
}

impl TensorCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached tensor `name` as `as_` on `backend`'s device, or `load`'s result, cached.
    /// A hit is reported as [`LoadPath::Cached`] with nothing uploaded.
    pub fn get_or_load(
        &self,
        name: &str,
        as_: LoadAs,
        backend: &dyn Backend,
        load: impl FnOnce() -> Result<(DeviceTensor, TensorLoad), LoadError>,
    ) -> Result<(Arc<DeviceTensor>, TensorLoad), LoadError> {
        let start = Instant::now();
        if let Some((hit, row)) = self.map.lock().get(&key(name, as_, backend)) {
            let row = TensorLoad {
                bytes_uploaded: 0,
                bytes_produced: 0,
                time: start.elapsed(),
                path: LoadPath::Cached,
                ..row.clone()
            };
            return Ok((hit.clone(), row));
        }
        let (tensor, row) = load()?;
        let mut map = self.map.lock();
        let entry = map.entry(key(name, as_, backend));
        let (tensor, _) = entry.or_insert_with(|| (Arc::new(tensor), row.clone()));
        Ok((tensor.clone(), row))
    }

    /// The cached tensor, if any.
    pub fn get(&self, name: &str, as_: LoadAs, backend: &dyn Backend) -> Option<Arc<DeviceTensor>> {
        let map = self.map.lock();
        map.get(&key(name, as_, backend)).map(|(t, _)| t.clone())
    }

    /// Takes a tensor out of the cache (a later load loads it again).
    pub fn take(
        &self,
        name: &str,
        as_: LoadAs,
        backend: &dyn Backend,
    ) -> Option<Arc<DeviceTensor>> {
        let taken = self.map.lock().remove(&key(name, as_, backend));
        taken.map(|(t, _)| t)
    }

    /// Drops every cached tensor (their memory is freed once no one else holds them).
    pub fn clear(&self) {
        self.map.lock().clear();
    }
}
