//! Kernel timing against the device's own copy bandwidth, for any [`Backend`].
//!
//! Each measurement warms up, then times every launch with device events and reports the
//! median. Inputs rotate over several buffers and outputs over two, so that (with the default
//! sizes) no launch finds its data in L2. Bandwidth counts bytes read plus bytes written.

use quant_core::{random_bytes, OutputDType, QuantFormat};

use crate::{Backend, Buffer, GpuError};

/// Sizes and repetitions of a measurement.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Bytes read plus written by one launch (the input is sized to fit this).
    pub bytes_per_launch: usize,
    /// Input buffers rotated between launches.
    pub input_sets: usize,
    /// Untimed launches first.
    pub warmup: usize,
    /// Timed launches.
    pub iters: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            bytes_per_launch: 768 << 20,
            input_sets: 4,
            warmup: 5,
            iters: 50,
        }
    }
}

/// One measurement.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// What was timed (`"Q4_K->f16"`, `"copy"`).
    pub label: String,
    /// Bytes read plus written by one launch.
    pub bytes_moved: u64,
    /// Median milliseconds per launch.
    pub median_ms: f64,
    /// Fastest launch, milliseconds.
    pub min_ms: f64,
    /// Slowest launch, milliseconds.
    pub max_ms: f64,
}

impl BenchResult {
    /// GB/s (10^9 bytes) at the median.
    pub fn gbps(&self) -> f64 {
        self.bytes_moved as f64 / (self.median_ms * 1e-3) / 1e9
    }
}

/// The median of `v` (the mean of the two middle values for an even count; NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summarize(label: String, bytes_moved: u64, ms: Vec<f32>) -> BenchResult {
    let ms: Vec<f64> = ms.into_iter().map(f64::from).collect();
    BenchResult {
        label,
        bytes_moved,
        median_ms: median(ms.clone()),
        min_ms: ms.iter().copied().reduce(f64::min).unwrap_or(f64::NAN),
        max_ms: ms.iter().copied().reduce(f64::max).unwrap_or(f64::NAN),
    }
}

fn upload_random(backend: &dyn Backend, len: usize, seed: u64) -> Result<Buffer, GpuError> {
    let mut buf = backend.alloc(len)?;
    backend.upload(&random_bytes(len, seed), &mut buf)?;
    Ok(buf)
}

fn run(
    backend: &dyn Backend,
    cfg: &BenchConfig,
    op: &mut dyn FnMut(usize) -> Result<(), GpuError>,
) -> Result<Vec<f32>, GpuError> {
    let mut i = 0usize;
    for _ in 0..cfg.warmup {
        op(i)?;
        i += 1;
    }
    backend.synchronize()?;
    backend.time_events(cfg.iters, &mut || {
        let r = op(i);
        i += 1;
        r
    })
}

/// Times a device-to-device copy of `cfg.bytes_per_launch / 2` bytes (so that it moves
/// `cfg.bytes_per_launch` bytes), rotating sources and destinations.
pub fn bench_copy(backend: &dyn Backend, cfg: &BenchConfig) -> Result<BenchResult, GpuError> {
    let bytes = (cfg.bytes_per_launch / 2).max(16);
    let n_src = cfg.input_sets.max(1);
    let srcs = (0..n_src)
        .map(|k| upload_random(backend, bytes, 0x5eed + k as u64))
        .collect::<Result<Vec<_>, _>>()?;
    let mut dsts = [backend.alloc(bytes)?, backend.alloc(bytes)?];
    let ms = run(backend, cfg, &mut |i| {
        backend.copy(&srcs[i % n_src], &mut dsts[i % 2])
    })?;
    Ok(summarize("copy".into(), 2 * bytes as u64, ms))
}

/// Times `format`'s kernel producing `dtype` on random blocks with finite scales of a realistic
/// magnitude (the format's [`QuantFormat::make_scales_finite`]), about
/// `cfg.bytes_per_launch` bytes read plus written per launch.
pub fn bench_dequant(
    backend: &dyn Backend,
    format: &'static dyn QuantFormat,
    dtype: OutputDType,
    cfg: &BenchConfig,
) -> Result<BenchResult, GpuError> {
    let kernel = format.kernel().ok_or_else(|| GpuError::NoKernel {
        format: format.name().to_string(),
        reason: "the format has no GPU kernel".into(),
    })?;
    let g = format.geometry();
    let per_block = g.block_bytes + g.block_elems * dtype.size();
    let n_blocks = (cfg.bytes_per_launch / per_block).max(1);
    let n_src = cfg.input_sets.max(1);
    let srcs = (0..n_src)
        .map(|k| {
            let mut blocks = random_bytes(n_blocks * g.block_bytes, 0xb10c + k as u64);
            format.make_scales_finite(&mut blocks);
            let mut buf = backend.alloc(blocks.len())?;
            backend.upload(&blocks, &mut buf)?;
            Ok(buf)
        })
        .collect::<Result<Vec<_>, GpuError>>()?;
    let out_bytes = n_blocks * g.block_elems * dtype.size();
    let mut dsts = [backend.alloc(out_bytes)?, backend.alloc(out_bytes)?];
    let ms = run(backend, cfg, &mut |i| {
        backend.dequantize(
            kernel,
            &srcs[i % n_src],
            n_blocks as u64,
            &mut dsts[i % 2],
            dtype,
        )
    })?;
    Ok(summarize(
        format!("{}->{}", format.name(), dtype),
        (n_blocks * per_block) as u64,
        ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        let r = summarize("x".into(), 1000, vec![3.0, 1.0, 2.0]);
        assert_eq!((r.median_ms, r.min_ms, r.max_ms), (2.0, 1.0, 3.0));
        let r = summarize("x".into(), 1000, vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!(r.median_ms, 2.5);
        // 1000 bytes in 2.5 ms = 400 kB/s.
        assert!((r.gbps() - 4e-4).abs() < 1e-12);
    }
}
