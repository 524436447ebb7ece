//! [`Placement`]: which device gets which tensors when a model is spread over several GPUs.
//!
//! Whole layers (tensors named `blk.N.…`) go to devices in proportion to the memory each has
//! free, in layer order, so that every layer lives on one device and consecutive layers share
//! one; every other tensor (embeddings, output, final norm) goes to the first device.

use std::collections::BTreeMap;

use quant_gguf::GgufFile;
use quant_gpu::MemInfo;

use crate::error::LoadError;
use crate::options::LoadAs;
use crate::plan::{self, Target};

/// One device's share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevicePlacement {
    /// Indices into [`GgufFile::tensors`], in file order.
    pub tensors: Vec<usize>,
    /// Layer numbers (`blk.N.`) placed here, ascending.
    pub layers: Vec<u32>,
    /// Device bytes of those tensors once loaded.
    pub bytes: u64,
    /// Bytes the device had free when planned.
    pub free: u64,
}

/// Tensors per device; [`GgufLoader::load_placed`](crate::GgufLoader::load_placed) loads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// One entry per device, in the order the devices were given.
    pub devices: Vec<DevicePlacement>,
    /// Bytes kept free on every device for the ring and the runtime.
    pub reserve: u64,
}

/// Bytes `t` takes on a device loaded as `as_` (its bytes in the file if it cannot be
/// planned: the load itself then reports why).
fn device_bytes(t: &quant_gguf::TensorInfo, as_: LoadAs) -> u64 {
    let planned = plan::plan(t.ty, &t.dims, as_, None, Target::Device);
    planned.map_or(t.n_bytes, |p| p.out_bytes)
}

/// The layer number of a tensor named `blk.N.…`, or `None`.
pub fn layer_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("blk.")?;
    let (n, tail) = rest.split_once('.')?;
    if tail.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

impl Placement {
    /// Plans `file` loaded as `as_` over devices with memory `mem`, keeping nothing in reserve.
    pub fn plan(file: &GgufFile, mem: &[MemInfo], as_: LoadAs) -> Result<Placement, LoadError> {
        Self::plan_with(file, mem, &[], as_, 0)
    }

    /// Plans with device labels for errors (`"cuda:1"`; missing ones read `"#i"`) and `reserve`
    /// bytes kept free per device (the ring, kernels, the runtime's own needs).
    pub fn plan_with(
        file: &GgufFile,
        mem: &[MemInfo],
        labels: &[String],
        as_: LoadAs,
        reserve: u64,
    ) -> Result<Placement, LoadError> {
        let path = file.path().to_path_buf();
        if mem.is_empty() {
            return Err(LoadError::Options {
                file: path,
                reason: "a placement needs at least one device".into(),
            });
        }
        let label = |i: usize| labels.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        let usable: Vec<u64> = mem.iter().map(|m| m.free.saturating_sub(reserve)).collect();
        let mut devices: Vec<DevicePlacement> = mem
            .iter()
            .map(|m| DevicePlacement {
                free: m.free,
                ..Default::default()
            })
            .collect();

        let mut layers: BTreeMap<u32, (u64, Vec<usize>)> = BTreeMap::new();
        for (i, t) in file.tensors().enumerate() {
            let bytes = device_bytes(&t, as_);
            match layer_of(&t.name) {
                Some(l) => {
                    let e = layers.entry(l).or_default();
                    e.0 += bytes;
                    e.1.push(i);
                }
                None => {
                    devices[0].tensors.push(i);
                    devices[0].bytes += bytes;
                }
            }
        }
        let total: u64 = devices[0].bytes + layers.values().map(|(b, _)| b).sum::<u64>();
        let sum_usable: u128 = usable.iter().map(|&u| u as u128).sum();
        let target: Vec<u64> = usable
            .iter()
            .map(|&u| {
                (total as u128 * u as u128)
                    .checked_div(sum_usable)
                    .map_or(0, |t| t as u64)
            })
            .collect();

        let last = devices.len() - 1;
        let mut d = 0;
        for (l, (bytes, idx)) in layers {
            // Move on when this device has reached its share (counting half of the layer, so
            // that shares round to the nearest layer), or when the layer would not fit.
            while d < last
                && (devices[d].bytes + bytes / 2 > target[d]
                    || devices[d].bytes + bytes > usable[d])
            {
                d += 1;
            }
            let dev = &mut devices[d];
            dev.layers.push(l);
            dev.bytes += bytes;
            dev.tensors.extend(idx);
        }
        for (i, dev) in devices.iter_mut().enumerate() {
            dev.tensors.sort_unstable();
            if dev.bytes > usable[i] {
                return Err(LoadError::DeviceTooSmall {
                    file: path,
                    device: i,
                    label: label(i),
                    need: dev.bytes + reserve,
                    reserve,
                    free: mem[i].free,
                });
            }
        }
        Ok(Placement { devices, reserve })
    }

    /// Bytes placed on all devices.
    pub fn bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quant_core::GgmlType;
    use quant_gguf::GgufWriter;

    /// A file with `layers` layers of two F32 tensors (4 KiB and 12 KiB) plus an embedding and
    /// an output tensor (8 KiB each).
    fn model(layers: u32) -> GgufFile {
        let mut w = GgufWriter::new();
        let f32 = GgmlType::from_name("F32").unwrap();
        let add = |w: &mut GgufWriter, name: String, n: u64| {
            w.add_tensor(name, &[n], f32, vec![0u8; n as usize * 4].into())
                .unwrap();
        };
        add(&mut w, "token_embd.weight".into(), 2048);
        for l in 0..layers {
            add(&mut w, format!("blk.{l}.attn_q.weight"), 1024);
            add(&mut w, format!("blk.{l}.ffn_up.weight"), 3072);
        }
        add(&mut w, "output.weight".into(), 2048);
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        GgufFile::from_bytes(bytes, "model.gguf").unwrap()
    }

    fn mem(free: u64) -> MemInfo {
        MemInfo {
            free,
            total: free * 2,
        }
    }

    const LAYER: u64 = 16 << 10;
    const OTHER: u64 = 16 << 10;
    const F32: LoadAs = LoadAs::Values(quant_core::OutputDType::F32);

    #[test]
    fn layer_names_parse() {
        assert_eq!(layer_of("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_of("blk.x.attn_q.weight"), None);
        assert_eq!(layer_of("blk.3"), None);
        assert_eq!(layer_of("blk.3."), None);
        assert_eq!(layer_of("output.weight"), None);
    }

    #[test]
    fn layers_go_whole_in_proportion_to_free_memory() {
        let f = model(30);
        // Free memory 1 : 2 -> about a third of the bytes on the first device.
        let p = Placement::plan(&f, &[mem(1 << 20), mem(2 << 20)], F32).unwrap();
        let total = OTHER + 30 * LAYER;
        assert_eq!(p.bytes(), total);
        let share0 = p.devices[0].bytes as f64 / total as f64;
        assert!(
            (share0 - 1.0 / 3.0).abs() < LAYER as f64 / total as f64,
            "{share0}"
        );
        // Embedding and output on the first device, layers contiguous and each whole.
        let names = |d: &DevicePlacement| -> Vec<String> {
            d.tensors
                .iter()
                .map(|&i| f.tensor_at(i).unwrap().name)
                .collect()
        };
        let n0 = names(&p.devices[0]);
        assert!(n0.contains(&"token_embd.weight".to_string()));
        assert!(n0.contains(&"output.weight".to_string()));
        let all_layers: Vec<u32> = p.devices.iter().flat_map(|d| d.layers.clone()).collect();
        assert_eq!(
            all_layers,
            (0..30).collect::<Vec<_>>(),
            "in order, once each"
        );
        for d in &p.devices {
            for n in names(d) {
                if let Some(l) = layer_of(&n) {
                    assert!(d.layers.contains(&l), "{n} sits with its layer");
                }
            }
            assert_eq!(
                d.bytes,
                d.tensors
                    .iter()
                    .map(|&i| device_bytes(&f.tensor_at(i).unwrap(), F32))
                    .sum::<u64>()
            );
        }
        assert_eq!(
            p.devices.iter().map(|d| d.tensors.len()).sum::<usize>(),
            f.tensor_count()
        );
        // Equal devices split evenly (to within a layer).
        let p = Placement::plan(&f, &[mem(1 << 20), mem(1 << 20)], F32).unwrap();
        let diff = p.devices[0].bytes.abs_diff(p.devices[1].bytes);
        assert!(diff <= LAYER, "{diff}");
    }

    #[test]
    fn tiny_and_empty_cases() {
        let f = model(0);
        let p = Placement::plan(&f, &[mem(1 << 20), mem(1 << 20)], F32).unwrap();
        assert_eq!(p.devices[0].tensors.len(), 2);
        assert!(p.devices[1].tensors.is_empty() && p.devices[1].bytes == 0);
        let f = model(1);
        let p = Placement::plan(&f, &[mem(1 << 20)], F32).unwrap();
        assert_eq!(p.devices[0].layers, vec![0]);
        assert_eq!(p.devices[0].tensors.len(), 4);
        let e = Placement::plan(&f, &[], F32).unwrap_err();
        assert!(e.to_string().contains("at least one device"), "{e}");
    }

    #[test]
    fn a_device_too_small_is_an_error_naming_it_and_the_bytes() {
        let f = model(8);
        let labels = vec!["cuda:0".to_string(), "cuda:1".to_string()];
        let e = Placement::plan_with(&f, &[mem(48 << 10), mem(40 << 10)], &labels, F32, 8 << 10)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, LoadError::DeviceTooSmall { device: 1, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("cuda:1") && msg.contains(&(40u64 << 10).to_string()),
            "{msg}"
        );
        // The first device alone too small for the tensors outside layers.
        let e = Placement::plan(&f, &[mem(1 << 10), mem(1 << 30)], F32).unwrap_err();
        assert!(
            matches!(e, LoadError::DeviceTooSmall { device: 0, .. }),
            "{e}"
        );
        // Native blocks are planned at their file size.
        let p = Placement::plan(&f, &[mem(1 << 30)], LoadAs::Native).unwrap();
        assert_eq!(p.bytes(), f.tensors().map(|t| t.n_bytes).sum::<u64>());
    }
}
