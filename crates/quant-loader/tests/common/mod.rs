//! A host-memory test backend shared by the loader's test binaries.
//!
//! `TestBackend` keeps "device" memory on the host and runs every operation at once, running each
//! kernel as its format's CPU fast path (or failing on demand). With `asynchronous` set (the
//! default) it also offers the pipeline's primitives and models its queues (compute, copy and
//! any number of lanes), each in order: it numbers the work on each queue, tracks which queue
//! (or the host) has waited for which fence, and records a violation whenever a copy overwrites
//! device bytes that a kernel not yet known to be finished reads, or a kernel reads bytes whose
//! copy is not known to have landed. Work earlier on the same queue is always known finished. With `asynchronous`
//! off it offers none of them, so the loader takes its serial path through the trait's defaults.
#![allow(dead_code)] // each test binary uses a different part

use std::any::Any;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use quant_core::cpu::{self, CpuPath};
use quant_core::{registry, KernelSpec, OutputDType};
use quant_gpu::{
    Backend, Buffer, DeviceInfo, DeviceKind, Fence, GpuError, HostBuffer, MemInfo, Queue,
    RawBuffer, RawFence, RawHostBuffer,
};

#[derive(Debug)]
pub struct DevMem {
    /// Identity, for the queue model.
    pub id: usize,
    /// The bytes.
    pub data: Vec<u8>,
}
impl RawBuffer for DevMem {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn device_ptr(&self) -> u64 {
        self.data.as_ptr() as u64
    }
    fn release(&mut self) {
        std::mem::forget(std::mem::take(&mut self.data));
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[derive(Debug)]
struct Pinned(Vec<u8>);
impl RawHostBuffer for Pinned {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn is_pinned(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Queues the model tracks: compute, copy and this many lanes.
const QUEUES: usize = 2 + 64;

/// What each party is known to have waited for, and what touched device memory when.
#[derive(Debug)]
pub struct Model {
    seq: [u64; QUEUES],
    /// `seen[a][b]`: the latest work of queue `b` that queue `a` has waited for.
    seen: [[u64; QUEUES]; QUEUES],
    /// The latest work of each queue the host has waited for.
    host_seen: [u64; QUEUES],
    /// (buffer, range, queue, number on it) of each asynchronous copy.
    writes: Vec<(usize, Range<usize>, usize, u64)>,
    /// (buffer, range, queue, number on it) of each kernel read.
    reads: Vec<(usize, Range<usize>, usize, u64)>,
    /// Queues that ran kernels or asynchronous copies.
    pub used: std::collections::HashSet<Queue>,
    violations: Vec<String>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            seq: [0; QUEUES],
            seen: [[0; QUEUES]; QUEUES],
            host_seen: [0; QUEUES],
            writes: Vec::new(),
            reads: Vec::new(),
            used: Default::default(),
            violations: Vec::new(),
        }
    }
}

impl Model {
    /// Whether work number `seq` of queue `of` is known finished to queue `by`: earlier on the
    /// same queue, or waited for through a fence by that queue or the host.
    fn known(&self, by: usize, of: usize, seq: u64) -> bool {
        of == by || seq <= self.seen[by][of].max(self.host_seen[of])
    }
}

fn qi(q: Queue) -> usize {
    match q {
        Queue::Compute => 0,
        Queue::Copy => 1,
        Queue::Lane(l) => 2 + usize::from(l),
    }
}

fn queue_of(i: usize) -> Queue {
    match i {
        0 => Queue::Compute,
        1 => Queue::Copy,
        l => Queue::Lane((l - 2) as u16),
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

#[derive(Debug)]
struct TestFence {
    queue: usize,
    seq: u64,
    model: Arc<Mutex<Model>>,
}
impl RawFence for TestFence {
    fn wait(&self) -> Result<(), GpuError> {
        let mut m = self.model.lock().unwrap();
        m.host_seen[self.queue] = m.host_seen[self.queue].max(self.seq);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub struct TestBackend {
    pub info: DeviceInfo,
    pub model: Arc<Mutex<Model>>,
    pub next_id: AtomicUsize,
    pub launch_fails: bool,
    /// Device allocations larger than this fail with OutOfMemory.
    pub alloc_limit: usize,
    pub launches: AtomicUsize,
    /// Kernels prepared ahead of their launches, by name.
    pub prepared: Mutex<Vec<&'static str>>,
    pub host_allocs: Mutex<Vec<usize>>,
    pub pageable_uploads: AtomicUsize,
    pub free: u64,
    /// Offer the pipeline primitives (`async_primitives`); off, the loader goes serial.
    pub asynchronous: bool,
}

impl TestBackend {
    pub fn new(ordinal: usize) -> Self {
        TestBackend {
            info: DeviceInfo {
                kind: DeviceKind::Cuda,
                ordinal,
                name: "pipeline test device".into(),
                arch: "none".into(),
                total_memory: 1 << 30,
                warp_size: 32,
                multiprocessors: 1,
            },
            model: Arc::default(),
            next_id: AtomicUsize::new(0),
            launch_fails: false,
            alloc_limit: usize::MAX,
            launches: AtomicUsize::new(0),
            prepared: Mutex::default(),
            host_allocs: Mutex::default(),
            pageable_uploads: AtomicUsize::new(0),
            free: 1 << 30,
            asynchronous: true,
        }
    }
    pub fn violations(&self) -> Vec<String> {
        self.model.lock().unwrap().violations.clone()
    }
    fn fence(&self, queue: usize, seq: u64) -> Fence {
        Fence::new(
            queue_of(queue),
            Box::new(TestFence {
                queue,
                seq,
                model: self.model.clone(),
            }),
        )
    }
}

pub fn dev(b: &Buffer) -> &DevMem {
    b.raw().as_any().downcast_ref::<DevMem>().unwrap()
}
pub fn dev_mut(b: &mut Buffer) -> &mut DevMem {
    b.raw_mut().as_any_mut().downcast_mut::<DevMem>().unwrap()
}

impl Backend for TestBackend {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn prepare_kernel(&self, kernel: &'static KernelSpec) -> Result<(), GpuError> {
        self.prepared.lock().unwrap().push(kernel.format);
        Ok(())
    }
    fn mem_info(&self) -> Result<MemInfo, GpuError> {
        Ok(MemInfo {
            free: self.free,
            total: 1 << 30,
        })
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        if bytes > self.alloc_limit {
            return Err(GpuError::OutOfMemory {
                device: "pipeline test device".into(),
                wanted: bytes as u64,
                free: self.alloc_limit as u64,
                total: 1 << 30,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        Ok(Buffer::new(
            Box::new(DevMem {
                id,
                data: vec![0xAB; bytes],
            }),
            DeviceKind::Cuda,
            self.info.ordinal,
        ))
    }
    fn upload(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.upload_at(src, dst, 0)
    }
    fn download(&self, src: &Buffer, dst: &mut [u8]) -> Result<(), GpuError> {
        self.synchronize()?;
        let n = dst.len();
        dst.copy_from_slice(&dev(src).data[..n]);
        Ok(())
    }
    fn fill(&self, buf: &mut Buffer, value: u8) -> Result<(), GpuError> {
        dev_mut(buf).data.fill(value);
        Ok(())
    }
    fn copy(&self, src: &Buffer, dst: &mut Buffer) -> Result<(), GpuError> {
        let s = dev(src).data.clone();
        dev_mut(dst).data.copy_from_slice(&s);
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
        self.dequantize_at(Queue::Compute, kernel, src, 0, n_blocks, dst, 0, dtype)
    }
    fn synchronize(&self) -> Result<(), GpuError> {
        let mut m = self.model.lock().unwrap();
        m.host_seen = m.seq;
        Ok(())
    }
    fn time_events(
        &self,
        iters: usize,
        op: &mut dyn FnMut() -> Result<(), GpuError>,
    ) -> Result<Vec<f32>, GpuError> {
        (0..iters).map(|_| op().map(|_| 0.0)).collect()
    }

    fn async_primitives(&self) -> bool {
        self.asynchronous
    }
    fn alloc_host(&self, bytes: usize) -> Result<HostBuffer, GpuError> {
        self.host_allocs.lock().unwrap().push(bytes);
        Ok(HostBuffer::new(Box::new(Pinned(vec![0; bytes]))))
    }
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut Buffer,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        assert!(src.is_pinned(), "the pipeline stages through alloc_host");
        let q = qi(queue);
        let d = dev_mut(dst);
        let target = dst_offset..dst_offset + range.len();
        let seq = {
            let mut m = self.model.lock().unwrap();
            m.used.insert(queue);
            m.seq[q] += 1;
            let seq = m.seq[q];
            let bad: Vec<String> = m
                .reads
                .iter()
                .filter(|(id, r, rq, s)| *id == d.id && overlaps(r, &target) && !m.known(q, *rq, *s))
                .map(|(id, r, rq, s)| {
                    let k = queue_of(*rq);
                    format!("copy {seq} overwrites buffer {id} {r:?} read by unfinished kernel {s} of {k:?}")
                })
                .collect();
            m.violations.extend(bad);
            m.writes.push((d.id, target.clone(), q, seq));
            seq
        };
        d.data[target].copy_from_slice(&src.as_slice()[range]);
        src.set_pending(self.fence(q, seq));
        Ok(())
    }
    fn upload_at(&self, src: &[u8], dst: &mut Buffer, dst_offset: usize) -> Result<(), GpuError> {
        dev_mut(dst).data[dst_offset..dst_offset + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn upload_pageable(&self, src: &[u8], dst: &mut Buffer) -> Result<(), GpuError> {
        self.pageable_uploads.fetch_add(1, Ordering::SeqCst);
        self.upload_at(src, dst, 0)
    }
    fn record(&self, queue: Queue) -> Result<Fence, GpuError> {
        let q = qi(queue);
        let seq = self.model.lock().unwrap().seq[q];
        Ok(self.fence(q, seq))
    }
    fn wait_fence(&self, queue: Queue, fence: &Fence) -> Result<(), GpuError> {
        let f = fence
            .raw()
            .and_then(|r| r.as_any().downcast_ref::<TestFence>())
            .expect("a fence of this backend");
        let mut m = self.model.lock().unwrap();
        let q = qi(queue);
        m.seen[q][f.queue] = m.seen[q][f.queue].max(f.seq);
        Ok(())
    }
    fn dequantize_at(
        &self,
        queue: Queue,
        kernel: &'static KernelSpec,
        src: &Buffer,
        src_offset: usize,
        n_blocks: u64,
        dst: &mut Buffer,
        dst_offset: usize,
        dtype: OutputDType,
    ) -> Result<(), GpuError> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        if self.launch_fails {
            return Err(GpuError::Launch {
                entry: kernel.entry(dtype),
                file: kernel.file_name,
                reason: "test device refuses".into(),
            });
        }
        assert_eq!(src_offset % 256, 0, "slot offsets are aligned");
        assert_eq!(dst_offset % 256, 0, "output offsets are aligned");
        let format = registry()
            .iter()
            .find(|f| f.kernel().is_some_and(|k| std::ptr::eq(k, kernel)))
            .expect("kernel belongs to a registered format");
        let g = format.geometry();
        assert_eq!(kernel.geometry, g, "the spec carries its format's geometry");
        let s = dev(src);
        let range = src_offset..src_offset + n_blocks as usize * g.block_bytes;
        {
            let mut m = self.model.lock().unwrap();
            let q = qi(queue);
            m.used.insert(queue);
            m.seq[q] += 1;
            let seq = m.seq[q];
            let bad: Vec<String> = m
                .writes
                .iter()
                .filter(|(id, r, wq, w)| *id == s.id && overlaps(r, &range) && !m.known(q, *wq, *w))
                .map(|(id, r, wq, w)| {
                    let k = queue_of(*wq);
                    format!("kernel {seq} reads buffer {id} {r:?} before copy {w} of {k:?} is known done")
                })
                .collect();
            m.violations.extend(bad);
            m.reads.push((s.id, range.clone(), q, seq));
        }
        let values = cpu::dequantize_to_vec(format, &s.data[range], CpuPath::Fast).unwrap();
        assert_eq!(values.len(), n_blocks as usize * g.block_elems);
        let bytes = cpu::encode_as(&values, dtype);
        dev_mut(dst).data[dst_offset..dst_offset + bytes.len()].copy_from_slice(&bytes);
        Ok(())
    }
}
