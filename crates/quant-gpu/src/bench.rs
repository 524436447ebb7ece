//! Kernel timing against the device's own copy bandwidth, for any [`Backend`].
//!
//! Two kinds of measurement:
//!
//! * **Streaming** ([`bench_dequant`], [`bench_copy`]): each measurement warms up, then times
//!   every launch with device events and reports the median. Inputs rotate over several buffers
//!   and outputs over two, so that (with the default sizes) no launch finds its data in L2: the
//!   figure is what the card's memory lets the kernel reach.
//! * **Resident** ([`bench_resident_dequant`], [`bench_resident_copy`]): one input and one
//!   output, together within a byte budget well under the L2 cache, launched back to back
//!   ([`ResidentConfig::launches_per_run`] launches between two device events, the run's time
//!   divided by the launches), the median over many runs; each launch is whole waves of the
//!   groups the device runs at once ([`whole_waves`]), so that no partial last wave leaves
//!   multiprocessors idle. With [`ResidentConfig::queues`] above one, the data is split into
//!   that many parts, each with its own buffers and launched on a queue of its own
//!   ([`Queue::Lane`]): one part's launch then runs while another's starts or drains, so the
//!   gaps between launches on one queue no longer count. Memory does not limit these launches,
//!   and one launch's latency is spread over many, so the figure is the kernel's compute
//!   ceiling: the memory bandwidth it could feed ([`ResidentResult::fed_gbps`]), which is the
//!   same on cards whose SMs are the same, whatever their memory.
//!
//! Bandwidth counts bytes read plus bytes written.

use std::time::Instant;

use quant_core::{random_bytes, BlockGeometry, OutputDType, QuantFormat};

use crate::{Backend, Buffer, GpuError, Queue};

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

/// Default byte budget of a resident measurement, input plus output: 24 MB, under half of the
/// smallest L2 of the cards it is meant for (50 MB on an H100, 60 MB on an H200), so that the data stays
/// in L2 across launches whichever partition of the cache a block lands in.
pub const DEFAULT_RESIDENT_BUDGET: usize = 24_000_000;

/// A timed run whose host spent at least this fraction of the device's time issuing its
/// launches is reported as launch-bound ([`ResidentResult::launch_bound`]): the device may have
/// waited for the host, so the figure is a floor of the kernel's speed, not its ceiling.
pub const LAUNCH_BOUND_RATIO: f64 = 0.9;

/// Sizes and repetitions of a resident measurement (see the module docs).
#[derive(Clone, Debug)]
pub struct ResidentConfig {
    /// Bytes of input plus output, at most; sized down to whole blocks.
    pub budget_bytes: usize,
    /// Launches back to back between the two events of one timed run.
    pub launches_per_run: usize,
    /// Timed runs; the median is reported.
    pub runs: usize,
    /// Parts the data is split into, each launched on a queue of its own (1: the backend's
    /// compute queue, one launch per round).
    pub queues: usize,
}

impl Default for ResidentConfig {
    fn default() -> Self {
        ResidentConfig {
            budget_bytes: DEFAULT_RESIDENT_BUDGET,
            launches_per_run: 200,
            runs: 20,
            queues: 1,
        }
    }
}

/// One resident measurement. Times are per launch: each run's device time divided by
/// [`ResidentResult::launches_per_run`]. With several queues a "launch" is one round, a launch
/// on each queue, covering all the data.
#[derive(Clone, Debug)]
pub struct ResidentResult {
    /// What was timed (`"Q4_K->f16"`, `"copy"`).
    pub label: String,
    /// Values written by one launch (0 for a copy).
    pub elements: u64,
    /// Bytes read plus written by one launch.
    pub bytes_moved: u64,
    /// Launches per timed run.
    pub launches_per_run: usize,
    /// Timed runs.
    pub runs: usize,
    /// Queues the launches were spread over ([`ResidentConfig::queues`]).
    pub queues: usize,
    /// Median over runs of the device's milliseconds per launch.
    pub median_ms: f64,
    /// Fastest run, milliseconds per launch.
    pub min_ms: f64,
    /// Slowest run, milliseconds per launch.
    pub max_ms: f64,
    /// Median over runs of the host's milliseconds to issue one launch.
    pub host_ms: f64,
    /// Waves of groups one launch is: its groups over those the device runs at once
    /// ([`Backend::resident_groups`]); `None` for a copy, or where the backend cannot say.
    pub waves: Option<f64>,
}

impl ResidentResult {
    /// 10^9 values written per second at the median.
    pub fn gelem_per_s(&self) -> f64 {
        self.elements as f64 / (self.median_ms * 1e-3) / 1e9
    }

    /// Bytes moved per value written: the format's block bytes per element plus the output
    /// type's size (NaN for a copy).
    pub fn bytes_per_element(&self) -> f64 {
        self.bytes_moved as f64 / self.elements as f64
    }

    /// The memory bandwidth the kernel can feed, GB/s: [`Self::gelem_per_s`] ×
    /// [`Self::bytes_per_element`]. A kernel keeps up with a card whose streaming copy is below
    /// this figure.
    pub fn fed_gbps(&self) -> f64 {
        self.gelem_per_s() * self.bytes_per_element()
    }

    /// GB/s (10^9 bytes) read plus written at the median: a copy's figure, and a kernel's
    /// [`Self::fed_gbps`] computed from bytes.
    pub fn gbps(&self) -> f64 {
        self.bytes_moved as f64 / (self.median_ms * 1e-3) / 1e9
    }

    /// Whether the host took nearly as long to issue the launches as the device to run them
    /// ([`LAUNCH_BOUND_RATIO`]): the device may then have idled between launches, and a larger
    /// budget (more work per launch) gives a truer figure.
    pub fn launch_bound(&self) -> bool {
        self.host_ms >= LAUNCH_BOUND_RATIO * self.median_ms
    }
}

/// Whole blocks of `g` that fit in `budget` bytes together with their `dtype` output; an error
/// when not even one block does.
pub fn resident_blocks(
    g: BlockGeometry,
    dtype: OutputDType,
    budget: usize,
) -> Result<u64, GpuError> {
    let per_block = g.block_bytes + g.block_elems * dtype.size();
    match budget / per_block {
        0 => Err(GpuError::BufferSize {
            op: "resident bench budget",
            have: budget,
            need: per_block,
        }),
        n => Ok(n as u64),
    }
}

/// Device and host milliseconds per launch, one pair per timed run.
struct Runs {
    device_ms: Vec<f64>,
    host_ms: Vec<f64>,
}

/// The queues a resident measurement launches on: the compute queue alone, or `n` lanes.
fn resident_queues(n: usize) -> Vec<Queue> {
    match n {
        0 | 1 => vec![Queue::Compute],
        n => (0..n).map(|k| Queue::Lane(k as u16)).collect(),
    }
}

/// Makes `queues` wait for the work queued on the compute queue so far (the start event of a
/// timed run), or, with `join`, the compute queue wait for theirs (its end event).
fn order_queues(backend: &dyn Backend, queues: &[Queue], join: bool) -> Result<(), GpuError> {
    if queues == [Queue::Compute] {
        return Ok(());
    }
    if join {
        for &q in queues {
            backend.wait_fence(Queue::Compute, &backend.record(q)?)?;
        }
    } else {
        let start = backend.record(Queue::Compute)?;
        for &q in queues {
            backend.wait_fence(q, &start)?;
        }
    }
    Ok(())
}

/// Times `cfg.runs` runs of `cfg.launches_per_run` rounds each, a round calling `op(k)` for
/// every queue `k` of `queues`. One untimed run first (module load, clocks); before each timed
/// run, a synchronisation and one untimed run queued ahead of it, so that the device has work
/// while the host queues the timed launches.
fn time_runs(
    backend: &dyn Backend,
    cfg: &ResidentConfig,
    queues: &[Queue],
    op: &mut dyn FnMut(usize) -> Result<(), GpuError>,
) -> Result<Runs, GpuError> {
    let launches = cfg.launches_per_run.max(1);
    let mut burst = || -> Result<(), GpuError> {
        order_queues(backend, queues, false)?;
        for _ in 0..launches {
            (0..queues.len()).try_for_each(&mut *op)?;
        }
        order_queues(backend, queues, true)
    };
    burst()?;
    let mut runs = Runs {
        device_ms: Vec::with_capacity(cfg.runs),
        host_ms: Vec::with_capacity(cfg.runs),
    };
    for _ in 0..cfg.runs {
        backend.synchronize()?;
        burst()?;
        let mut host_s = 0.0;
        let ms = backend.time_events(1, &mut || {
            let t = Instant::now();
            let r = burst();
            host_s = t.elapsed().as_secs_f64();
            r
        })?;
        let device_ms = ms.first().copied().map_or(f64::NAN, f64::from);
        runs.device_ms.push(device_ms / launches as f64);
        runs.host_ms.push(host_s * 1e3 / launches as f64);
    }
    backend.synchronize()?;
    Ok(runs)
}

fn summarize_resident(
    label: String,
    elements: u64,
    bytes_moved: u64,
    cfg: &ResidentConfig,
    runs: Runs,
) -> ResidentResult {
    let ms = &runs.device_ms;
    ResidentResult {
        label,
        elements,
        bytes_moved,
        launches_per_run: cfg.launches_per_run.max(1),
        runs: ms.len(),
        queues: cfg.queues.max(1),
        median_ms: median(ms.clone()),
        min_ms: ms.iter().copied().reduce(f64::min).unwrap_or(f64::NAN),
        max_ms: ms.iter().copied().reduce(f64::max).unwrap_or(f64::NAN),
        host_ms: median(runs.host_ms),
        waves: None,
    }
}

/// `n_blocks` cut down to whole waves of `wave_groups` groups of `blocks_per_group` blocks,
/// when it holds at least one wave, and the waves it then is: a launch of a fraction of a wave
/// more leaves most multiprocessors idle while the last groups run, which a resident
/// measurement, a few waves long, would count against the kernel. Without `wave_groups` (the
/// backend cannot say), `n_blocks` as it is.
pub fn whole_waves(
    n_blocks: u64,
    blocks_per_group: u64,
    wave_groups: Option<u64>,
) -> (u64, Option<f64>) {
    let Some(wave) = wave_groups
        .filter(|&g| g > 0)
        .map(|g| g * blocks_per_group.max(1))
    else {
        return (n_blocks, None);
    };
    let n = if n_blocks >= wave {
        n_blocks / wave * wave
    } else {
        n_blocks
    };
    (n, Some(n as f64 / wave as f64))
}

/// Times a device-to-device copy of `cfg.budget_bytes / 2` bytes, over and over (it moves the
/// budget: bytes read plus written), split over [`ResidentConfig::queues`] pairs of buffers
/// and queues, for reference next to [`bench_resident_dequant`].
pub fn bench_resident_copy(
    backend: &dyn Backend,
    cfg: &ResidentConfig,
) -> Result<ResidentResult, GpuError> {
    let queues = resident_queues(cfg.queues);
    let bytes = (cfg.budget_bytes / 2 / queues.len()).max(16);
    let mut pairs = (0..queues.len())
        .map(|k| {
            Ok((
                upload_random(backend, bytes, 0x5eed + k as u64)?,
                backend.alloc(bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, GpuError>>()?;
    let runs = time_runs(backend, cfg, &queues, &mut |k| {
        let (src, dst) = &mut pairs[k];
        backend.copy_on(queues[k], src, dst)
    })?;
    let moved = 2 * bytes * queues.len();
    Ok(summarize_resident(
        "copy".into(),
        0,
        moved as u64,
        cfg,
        runs,
    ))
}

/// Times `format`'s kernel producing `dtype` on data resident in L2: the most whole blocks
/// whose bytes and output fit in `cfg.budget_bytes` ([`resident_blocks`]), cut down to whole
/// waves of the groups the device runs at once ([`whole_waves`]), random with finite scales
/// ([`QuantFormat::make_scales_finite`]), one input and one output buffer per queue
/// ([`ResidentConfig::queues`]), the blocks split evenly between them.
pub fn bench_resident_dequant(
    backend: &dyn Backend,
    format: &'static dyn QuantFormat,
    dtype: OutputDType,
    cfg: &ResidentConfig,
) -> Result<ResidentResult, GpuError> {
    let kernel = format.kernel().ok_or_else(|| GpuError::NoKernel {
        format: format.name().to_string(),
        reason: "the format has no GPU kernel".into(),
    })?;
    let g = format.geometry();
    let fit = resident_blocks(g, dtype, cfg.budget_bytes)?;
    let wave_groups = backend.resident_groups(kernel, dtype)?;
    let (n_blocks, waves) = whole_waves(fit, u64::from(kernel.blocks_per_group), wave_groups);
    let queues = resident_queues(cfg.queues);
    let per_part = (n_blocks / queues.len() as u64).max(1);
    let waves = waves.map(|w| w * (per_part * queues.len() as u64) as f64 / n_blocks as f64);
    let n = per_part as usize;
    let out_bytes = n * g.block_elems * dtype.size();
    let mut parts = (0..queues.len())
        .map(|k| {
            let mut blocks = random_bytes(n * g.block_bytes, 0xb10c + k as u64);
            format.make_scales_finite(&mut blocks);
            let mut src = backend.alloc(blocks.len())?;
            backend.upload(&blocks, &mut src)?;
            Ok((src, backend.alloc(out_bytes)?))
        })
        .collect::<Result<Vec<_>, GpuError>>()?;
    let runs = time_runs(backend, cfg, &queues, &mut |k| {
        let (src, dst) = &mut parts[k];
        backend.dequantize_at(queues[k], kernel, src, 0, per_part, dst, 0, dtype)
    })?;
    let label = format!("{}->{}", format.name(), dtype);
    let elements = (queues.len() * n * g.block_elems) as u64;
    let moved = (queues.len() * (n * g.block_bytes + out_bytes)) as u64;
    Ok(ResidentResult {
        waves,
        ..summarize_resident(label, elements, moved, cfg, runs)
    })
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

    /// A host-memory backend with a modelled device clock: each launch advances it by a fixed
    /// cost (times `slow_factor` on every third timed run), each copy by a cost per byte, and
    /// `time_events` reports how far it moved during each call of `op`.
    mod fake {
        use std::any::Any;
        use std::sync::Mutex;

        use quant_core::{GgmlType, KernelSpec, OutputDType, QuantFormat};

        use crate::{Backend, Buffer, DeviceInfo, DeviceKind, GpuError, MemInfo, RawBuffer};

        #[derive(Debug)]
        struct Mem(Vec<u8>);
        impl RawBuffer for Mem {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn device_ptr(&self) -> u64 {
                self.0.as_ptr() as u64
            }
            fn release(&mut self) {}
            fn as_any(&self) -> &dyn Any {
                self
            }
            fn as_any_mut(&mut self) -> &mut dyn Any {
                self
            }
        }

        /// What the fake saw.
        #[derive(Default, Debug)]
        pub struct Log {
            /// Milliseconds on the device clock.
            pub clock_ms: f64,
            pub allocs: Vec<usize>,
            /// `n_blocks` of each launch.
            pub launches: Vec<u64>,
            pub copies: usize,
            pub timed_calls: usize,
            pub syncs: usize,
        }

        pub struct Fake {
            pub info: DeviceInfo,
            /// Device milliseconds per launch.
            pub launch_ms: f64,
            /// Device milliseconds per byte copied.
            pub copy_ms_per_byte: f64,
            /// Launches during every third timed call cost this many times more.
            pub slow_factor: f64,
            /// What [`Backend::resident_groups`] answers.
            pub resident_groups: Option<u64>,
            pub log: Mutex<Log>,
        }

        impl Fake {
            pub fn new(launch_ms: f64) -> Self {
                Fake {
                    info: DeviceInfo {
                        kind: DeviceKind::Cuda,
                        ordinal: 0,
                        name: "fake".into(),
                        arch: "none".into(),
                        total_memory: 1 << 30,
                        warp_size: 32,
                        multiprocessors: 1,
                    },
                    launch_ms,
                    copy_ms_per_byte: 0.0,
                    slow_factor: 1.0,
                    resident_groups: None,
                    log: Mutex::default(),
                }
            }
            fn tick(&self, ms: f64) {
                let mut log = self.log.lock().unwrap();
                let slow = log.timed_calls % 3 == 2;
                log.clock_ms += if slow { ms * self.slow_factor } else { ms };
            }
        }

        impl Backend for Fake {
            fn info(&self) -> &DeviceInfo {
                &self.info
            }
            fn resident_groups(
                &self,
                _: &'static KernelSpec,
                _: OutputDType,
            ) -> Result<Option<u64>, GpuError> {
                Ok(self.resident_groups)
            }
            fn mem_info(&self) -> Result<MemInfo, GpuError> {
                Ok(MemInfo {
                    free: 1 << 30,
                    total: 1 << 30,
                })
            }
            fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
                self.log.lock().unwrap().allocs.push(bytes);
                Ok(Buffer::new(
                    Box::new(Mem(vec![0; bytes])),
                    DeviceKind::Cuda,
                    0,
                ))
            }
            fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
                assert!(src.len() <= dst.len());
                Ok(())
            }
            fn download(&self, _: &Buffer, _: &mut [u8]) -> Result<(), GpuError> {
                Ok(())
            }
            fn fill(&self, _: &mut Buffer, _: u8) -> Result<(), GpuError> {
                Ok(())
            }
            fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
                assert_eq!(src.len(), dst.len());
                self.log.lock().unwrap().copies += 1;
                self.tick(src.len() as f64 * self.copy_ms_per_byte);
                Ok(())
            }
            fn dequantize(
                &self,
                kernel: &'static KernelSpec,
                src: &Buffer,
                n_blocks: u64,
                dst: &mut Buffer,
                dtype: OutputDType,
            ) -> Result<(), GpuError> {
                let g = kernel.geometry;
                assert!(src.len() >= n_blocks as usize * g.block_bytes);
                assert!(dst.len() >= n_blocks as usize * g.block_elems * dtype.size());
                self.log.lock().unwrap().launches.push(n_blocks);
                self.tick(self.launch_ms);
                Ok(())
            }
            fn synchronize(&self) -> Result<(), GpuError> {
                self.log.lock().unwrap().syncs += 1;
                Ok(())
            }
            fn time_events(
                &self,
                iters: usize,
                op: &mut dyn FnMut() -> Result<(), GpuError>,
            ) -> Result<Vec<f32>, GpuError> {
                (0..iters)
                    .map(|_| {
                        let start = self.log.lock().unwrap().clock_ms;
                        op()?;
                        let mut log = self.log.lock().unwrap();
                        log.timed_calls += 1;
                        Ok((log.clock_ms - start) as f32)
                    })
                    .collect()
            }
        }

        /// Q8_0's geometry: 32 values in 34 bytes.
        pub static SPEC: KernelSpec = KernelSpec {
            format: "fake",
            file_name: "fake/kernel.hip",
            source: "",
            entry_f32: "f32",
            entry_f16: "f16",
            entry_bf16: "bf16",
            threads_per_group: 256,
            blocks_per_group: 8,
            geometry: quant_core::BlockGeometry {
                block_elems: 32,
                block_bytes: 34,
            },
        };

        /// A format with [`SPEC`] as its kernel (not registered).
        pub struct Format;
        impl QuantFormat for Format {
            fn ggml_type(&self) -> GgmlType {
                GgmlType(8)
            }
            fn name(&self) -> &'static str {
                "FAKE"
            }
            fn geometry(&self) -> quant_core::BlockGeometry {
                SPEC.geometry
            }
            fn layout_doc(&self) -> &'static str {
                ""
            }
            fn dequantize_reference(&self, _: &[u8], _: &mut [f32]) {}
            fn dequantize_fast(&self, _: &[u8], _: &mut [f32]) {}
            fn kernel(&self) -> Option<&'static KernelSpec> {
                Some(&SPEC)
            }
        }
        pub static FORMAT: Format = Format;
    }

    /// Equal within f32 precision (device event times are f32).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs()
    }

    #[test]
    fn resident_sizing_takes_whole_blocks_within_the_budget() {
        let g = fake::SPEC.geometry;
        // 34 + 32 * 4 = 162 bytes per block and its f32 output: 6 blocks in 1000 bytes.
        assert_eq!(resident_blocks(g, OutputDType::F32, 1000).unwrap(), 6);
        // 34 + 64 = 98 per block with f16: 10 blocks (980 bytes).
        assert_eq!(resident_blocks(g, OutputDType::F16, 1000).unwrap(), 10);
        assert_eq!(resident_blocks(g, OutputDType::Bf16, 98).unwrap(), 1);
        // Q4_K's geometry in the default budget, f16: 24e6 / (144 + 512) = 36585 blocks.
        let q4k = BlockGeometry {
            block_elems: 256,
            block_bytes: 144,
        };
        let n = resident_blocks(q4k, OutputDType::F16, DEFAULT_RESIDENT_BUDGET).unwrap();
        assert_eq!(n, 36585);
        assert!(n * 656 <= DEFAULT_RESIDENT_BUDGET as u64);
        assert!((n + 1) * 656 > DEFAULT_RESIDENT_BUDGET as u64);
        let e = resident_blocks(g, OutputDType::F32, 161).unwrap_err();
        assert!(
            matches!(
                e,
                GpuError::BufferSize {
                    have: 161,
                    need: 162,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn resident_sizing_cuts_down_to_whole_waves_of_the_resident_groups() {
        // 1056 groups of 32 blocks at once: a wave is 33 792 blocks.
        assert_eq!(whole_waves(42_704, 32, Some(1056)), (33_792, Some(1.0)));
        assert_eq!(
            whole_waves(3 * 33_792 + 5, 32, Some(1056)),
            (3 * 33_792, Some(3.0))
        );
        // Under one wave, or with the occupancy unknown: as it fits.
        assert_eq!(whole_waves(16_896, 32, Some(1056)), (16_896, Some(0.5)));
        assert_eq!(whole_waves(42_704, 32, None), (42_704, None));
        assert_eq!(whole_waves(42_704, 32, Some(0)), (42_704, None));
    }

    #[test]
    fn resident_figures_follow_from_elements_bytes_and_time() {
        let r = ResidentResult {
            label: "x".into(),
            elements: 1_000_000,
            bytes_moved: 2_500_000,
            launches_per_run: 100,
            runs: 1,
            queues: 1,
            median_ms: 0.001,
            min_ms: 0.001,
            max_ms: 0.001,
            host_ms: 0.0005,
            waves: None,
        };
        // 10^6 values in 1 µs: 1000 Gelem/s; 2.5 bytes per value: 2500 GB/s fed.
        assert!(close(r.gelem_per_s(), 1000.0));
        assert!(close(r.bytes_per_element(), 2.5));
        assert!(close(r.fed_gbps(), 2500.0));
        assert!(close(r.gbps(), r.fed_gbps()));
        assert!(!r.launch_bound());
        let slow_host = ResidentResult {
            host_ms: 0.00095,
            ..r
        };
        assert!(slow_host.launch_bound());
    }

    #[test]
    fn resident_dequant_divides_each_run_by_its_launches_and_takes_the_median() {
        // 5 µs per launch; every third timed run three times slower (a noisy neighbour).
        let b = fake::Fake {
            slow_factor: 3.0,
            ..fake::Fake::new(0.005)
        };
        let cfg = ResidentConfig {
            budget_bytes: 1000,
            launches_per_run: 150,
            runs: 7,
            queues: 1,
        };
        let r = bench_resident_dequant(&b, &fake::FORMAT, OutputDType::F16, &cfg).unwrap();
        assert_eq!(r.label, "FAKE->f16");
        assert_eq!((r.elements, r.bytes_moved), (320, 980));
        assert_eq!((r.launches_per_run, r.runs), (150, 7));
        assert!(close(r.median_ms, 0.005), "{r:?}");
        assert!(close(r.min_ms, 0.005) && close(r.max_ms, 0.015), "{r:?}");
        // 320 values in 5 µs = 0.064 Gelem/s; 980 / 320 bytes per value = 3.0625.
        assert!(close(r.gelem_per_s(), 0.064));
        assert!(close(r.bytes_per_element(), 34.0 / 32.0 + 2.0));
        assert!(close(r.fed_gbps(), 0.196));
        assert!(r.host_ms.is_finite() && r.host_ms >= 0.0);

        let log = b.log.lock().unwrap();
        assert_eq!(
            log.allocs,
            [340, 640],
            "one input and one output within the budget"
        );
        assert_eq!(log.timed_calls, 7);
        // A warm-up run, then before each timed run one untimed run queued ahead of it.
        assert_eq!(log.launches.len(), 150 * (1 + 2 * 7));
        assert!(log.launches.iter().all(|&n| n == 10));
        assert!(log.syncs >= 7);
    }

    #[test]
    fn resident_dequant_launches_whole_waves_split_over_its_queues() {
        // The budget fits 20 blocks, 8 per group; two groups at once make a wave of 16 blocks,
        // launched whole on one queue or as two parts of 8 on two, a round launching both.
        for queues in [1u64, 2] {
            let b = fake::Fake {
                resident_groups: Some(2),
                ..fake::Fake::new(0.005)
            };
            let cfg = ResidentConfig {
                budget_bytes: 20 * 98,
                launches_per_run: 3,
                runs: 2,
                queues: queues as usize,
            };
            let r = bench_resident_dequant(&b, &fake::FORMAT, OutputDType::F16, &cfg).unwrap();
            assert_eq!((r.elements, r.waves), (16 * 32, Some(1.0)), "{queues}");
            assert_eq!((r.bytes_moved, r.queues), (16 * 98, queues as usize));
            // 5 µs a launch: a round of `queues` launches, as the fake runs them one by one.
            assert!(close(r.median_ms, 0.005 * queues as f64), "{r:?}");
            let log = b.log.lock().unwrap();
            let part = 16 / queues;
            let pair = [part as usize * 34, part as usize * 64];
            assert_eq!(log.allocs, pair.repeat(queues as usize), "{queues}");
            assert_eq!(log.launches.len() as u64, queues * 3 * (1 + 2 * 2));
            assert!(log.launches.iter().all(|&n| n == part), "{queues}");
        }
    }

    #[test]
    fn resident_copy_moves_the_budget() {
        let b = fake::Fake {
            copy_ms_per_byte: 1e-9,
            ..fake::Fake::new(0.0)
        };
        let cfg = ResidentConfig {
            budget_bytes: 2_000_000,
            launches_per_run: 100,
            runs: 5,
            queues: 1,
        };
        let r = bench_resident_copy(&b, &cfg).unwrap();
        assert_eq!(
            (r.label.as_str(), r.elements, r.bytes_moved),
            ("copy", 0, 2_000_000)
        );
        // 10^6 bytes at 1e-9 ms a byte: 1 µs per copy, 2 MB moved: 2000 GB/s.
        assert!(close(r.median_ms, 0.001), "{r:?}");
        assert!(close(r.gbps(), 2000.0));
        let log = b.log.lock().unwrap();
        assert_eq!(log.allocs, [1_000_000, 1_000_000]);
        assert_eq!(log.copies, 100 * (1 + 2 * 5));
        drop(log);
        let r = bench_resident_copy(&b, &ResidentConfig { queues: 4, ..cfg }).unwrap();
        assert_eq!((r.bytes_moved, r.queues), (2_000_000, 4));
        assert!(
            close(r.median_ms, 0.001),
            "four copies of 250 kB a round: {r:?}"
        );
    }

    #[test]
    fn resident_budget_below_one_block_is_an_error_before_any_allocation() {
        let b = fake::Fake::new(0.001);
        let cfg = ResidentConfig {
            budget_bytes: 100,
            ..ResidentConfig::default()
        };
        let e = bench_resident_dequant(&b, &fake::FORMAT, OutputDType::F32, &cfg).unwrap_err();
        assert!(e.to_string().contains("162"), "{e}");
        assert!(b.log.lock().unwrap().allocs.is_empty());
    }

    #[test]
    fn resident_defaults_stay_well_under_l2_and_time_at_least_100_launches() {
        let c = ResidentConfig::default();
        assert!(c.budget_bytes <= 25_000_000, "half of an H100's 50 MB L2");
        assert!(c.launches_per_run >= 100 && c.runs >= 20);
    }
}
