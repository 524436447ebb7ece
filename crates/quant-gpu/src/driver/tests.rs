//! [`GpuBackend`] against a fake driver that keeps its "device" memory on the host and logs
//! every call: the shared logic, tested without a device.
// The hand-over methods are `unsafe fn`s; the fake driver never touches the addresses.
#![allow(unsafe_code)]

use std::any::Any;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use quant_core::BlockGeometry;

use super::*;
use crate::{DeviceKind, RawHostBuffer};

#[derive(Debug)]
struct FakeMem {
    bytes: Vec<u8>,
    addr: u64,
    owned: bool,
}

impl RawBuffer for FakeMem {
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn device_ptr(&self) -> u64 {
        self.addr
    }
    fn owns_memory(&self) -> bool {
        self.owned
    }
    fn release(&mut self) {
        self.owned = false;
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Another backend's memory, on the same device ordinal.
#[derive(Debug)]
struct OtherMem;

impl RawBuffer for OtherMem {
    fn len(&self) -> usize {
        64
    }
    fn device_ptr(&self) -> u64 {
        0x1000
    }
    fn release(&mut self) {}
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[derive(Debug)]
struct FakeEvent;

impl RawFence for FakeEvent {
    fn wait(&self) -> Result<(), GpuError> {
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Another backend's fence; counts host waits.
#[derive(Debug)]
struct OtherFence(Arc<AtomicUsize>);

impl RawFence for OtherFence {
    fn wait(&self) -> Result<(), GpuError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Page-locked memory of context `.1`.
#[derive(Debug)]
struct FakePinned(Vec<u8>, u32);

impl RawHostBuffer for FakePinned {
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

/// (context, where kernels come from).
type Scope = (u32, &'static str);

static MODULES: ContextModules<Scope, &'static str> = ContextModules::new();

/// Allocations above this fail as out of memory; of exactly [`BROKEN_ALLOC`] bytes, otherwise.
const DEVICE_BYTES: usize = 1 << 20;
const BROKEN_ALLOC: usize = 13;

struct Fake {
    info: DeviceInfo,
    limits: DeviceLimits,
    scope: Scope,
    log: Mutex<Vec<String>>,
    clock: AtomicU64,
    fail_launch: bool,
}

impl Fake {
    fn new(context: u32, source: &'static str) -> Self {
        Fake {
            info: DeviceInfo {
                kind: DeviceKind::Cuda,
                ordinal: 0,
                name: "Fake".into(),
                arch: "sm_00".into(),
                total_memory: DEVICE_BYTES as u64,
                warp_size: 32,
                multiprocessors: 1,
            },
            limits: DeviceLimits::default(),
            scope: (context, source),
            log: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
            fail_launch: false,
        }
    }

    fn note(&self, call: impl Into<String>) {
        self.log.lock().unwrap().push(call.into());
    }
}

impl Driver for Fake {
    type Mem = FakeMem;
    type Module = &'static str;
    type Event = FakeEvent;
    type TimingEvent = AtomicU64;
    type Scope = Scope;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn limits(&self) -> DeviceLimits {
        self.limits
    }
    fn mem_info(&self) -> DriverResult<MemInfo> {
        Ok(MemInfo {
            free: 1000,
            total: DEVICE_BYTES as u64,
        })
    }
    fn alloc(&self, bytes: usize) -> DriverResult<FakeMem> {
        self.note(format!("alloc {bytes}"));
        if bytes == BROKEN_ALLOC {
            return Err(DriverError::new("fakeMalloc(13)", "the device fell over"));
        }
        if bytes > DEVICE_BYTES {
            let mut e = DriverError::new(format!("fakeMalloc({bytes})"), "out of memory");
            e.out_of_memory = true;
            return Err(e);
        }
        Ok(FakeMem {
            bytes: vec![0; bytes],
            addr: 0x7f00_0000_0000,
            owned: true,
        })
    }
    unsafe fn wrap(&self, ptr: u64, len: usize) -> Result<FakeMem, String> {
        self.note(format!("wrap {ptr:#x}"));
        if ptr >= 0x10_0000 {
            return Err("not an allocation of this device".into());
        }
        Ok(FakeMem {
            bytes: vec![0; len],
            addr: ptr,
            owned: false,
        })
    }
    fn alloc_host(&self, bytes: usize) -> DriverResult<HostBuffer> {
        Ok(HostBuffer::new(Box::new(FakePinned(
            vec![0; bytes],
            self.scope.0,
        ))))
    }
    fn owns_host(&self, host: &HostBuffer) -> bool {
        host.raw()
            .as_any()
            .downcast_ref::<FakePinned>()
            .is_some_and(|p| p.1 == self.scope.0)
    }
    fn upload(&self, src: &[u8], dst: &mut FakeMem, offset: usize) -> DriverResult<()> {
        self.note(format!("upload {} at {offset}", src.len()));
        dst.bytes[offset..offset + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn upload_async(
        &self,
        queue: Queue,
        src: &mut HostBuffer,
        range: Range<usize>,
        dst: &mut FakeMem,
        offset: usize,
    ) -> DriverResult<()> {
        self.note(format!("upload_async {queue:?} {range:?} at {offset}"));
        let len = range.len();
        dst.bytes[offset..offset + len].copy_from_slice(&src.as_slice()[range]);
        src.set_pending(Fence::new(queue, Box::new(FakeEvent)));
        Ok(())
    }
    fn download(&self, src: &FakeMem, dst: &mut [u8]) -> DriverResult<()> {
        self.note("download");
        let n = dst.len();
        dst.copy_from_slice(&src.bytes[..n]);
        Ok(())
    }
    fn memset(&self, dst: &mut FakeMem, value: u8) -> DriverResult<()> {
        self.note("memset");
        dst.bytes.fill(value);
        Ok(())
    }
    fn copy(
        &self,
        queue: Queue,
        src: &FakeMem,
        dst: &mut FakeMem,
        bytes: usize,
    ) -> DriverResult<()> {
        self.note(format!("copy {queue:?}"));
        dst.bytes[..bytes].copy_from_slice(&src.bytes[..bytes]);
        Ok(())
    }
    fn synchronize(&self) -> DriverResult<()> {
        self.note("synchronize");
        Ok(())
    }
    fn record(&self, queue: Queue) -> DriverResult<FakeEvent> {
        self.note(format!("record {queue:?}"));
        Ok(FakeEvent)
    }
    fn wait_event(&self, queue: Queue, _: &FakeEvent) -> DriverResult<()> {
        self.note(format!("wait_event {queue:?}"));
        Ok(())
    }
    unsafe fn make_stream_wait(&self, stream: usize) -> DriverResult<()> {
        self.note(format!("make_stream_wait {stream:#x}"));
        Ok(())
    }
    fn timing_event(&self) -> DriverResult<AtomicU64> {
        Ok(AtomicU64::new(u64::MAX))
    }
    fn record_timing(&self, event: &AtomicU64) -> DriverResult<()> {
        self.note("record_timing");
        let now = self.clock.fetch_add(1, Ordering::SeqCst);
        event.store(now, Ordering::SeqCst);
        Ok(())
    }
    fn elapsed_ms(&self, start: &AtomicU64, end: &AtomicU64) -> DriverResult<f32> {
        self.note("elapsed_ms");
        Ok((end.load(Ordering::SeqCst) - start.load(Ordering::SeqCst)) as f32)
    }
    fn module_scope(&self) -> Scope {
        self.scope
    }
    fn module_registry() -> &'static ContextModules<Scope, &'static str> {
        &MODULES
    }
    fn load_module(&self, spec: &'static KernelSpec) -> Result<&'static str, GpuError> {
        self.note(format!("load {}", spec.format));
        if spec.format == "broken" {
            return Err(GpuError::NoKernel {
                format: spec.format.into(),
                reason: "no code object".into(),
            });
        }
        Ok(spec.format)
    }
    /// 2048 threads per multiprocessor, fewer groups for f32 (as if it used more registers).
    fn groups_per_multiprocessor(
        &self,
        _: &&'static str,
        dtype: OutputDType,
        threads: u32,
    ) -> DriverResult<u32> {
        let groups = 2048 / threads;
        Ok(if dtype == OutputDType::F32 {
            groups / 2
        } else {
            groups
        })
    }
    fn launch(
        &self,
        queue: Queue,
        module: &&'static str,
        dtype: OutputDType,
        plan: &LaunchPlan,
        _: &FakeMem,
        dst: &mut FakeMem,
    ) -> DriverResult<()> {
        let on = match queue {
            Queue::Compute => String::new(),
            q => format!(" on {q:?}"),
        };
        self.note(format!(
            "launch{on} {module} {dtype} {}x{} {:?} -> {:?}",
            plan.groups(),
            plan.threads_per_group(),
            plan.src_range(),
            plan.dst_range()
        ));
        if self.fail_launch {
            return Err(DriverError::new("fakeLaunchKernel", "illegal address"));
        }
        dst.bytes[plan.dst_range()].fill(0xAB);
        Ok(())
    }
    unsafe fn launch_on_stream(
        &self,
        module: &&'static str,
        dtype: OutputDType,
        plan: &LaunchPlan,
        src: &FakeMem,
        dst: &mut FakeMem,
        stream: usize,
    ) -> DriverResult<()> {
        self.note(format!("on stream {stream:#x}"));
        self.launch(Queue::Compute, module, dtype, plan, src, dst)
    }
}

const fn spec(format: &'static str, threads: u32, blocks_per_group: u32) -> KernelSpec {
    KernelSpec {
        format,
        file_name: "quant-t/kernel.hip",
        source: "",
        entry_f32: "t_f32",
        entry_f16: "t_f16",
        entry_bf16: "t_bf16",
        threads_per_group: threads,
        blocks_per_group,
        geometry: BlockGeometry {
            block_elems: 32,
            block_bytes: 16,
        },
    }
}

static T: KernelSpec = spec("t", 64, 2);
static OTHER: KernelSpec = spec("other", 64, 2);
static BROKEN: KernelSpec = spec("broken", 64, 2);
static WIDE: KernelSpec = spec("wide", 256, 2);

fn log(b: &GpuBackend<Fake>) -> Vec<String> {
    std::mem::take(&mut *b.driver().log.lock().unwrap())
}

/// A backend of its own scope: the tests run in parallel and share the registry.
fn backend(context: u32) -> GpuBackend<Fake> {
    GpuBackend::new(Fake::new(context, "nvrtc"))
}

#[test]
fn buffers_are_checked_then_handed_to_the_driver() {
    let b = backend(1);
    let mut buf = b.alloc(64).unwrap();
    assert_eq!(buf.device(), (DeviceKind::Cuda, 0));
    b.upload(&[1, 2, 3], &mut buf).unwrap();
    b.upload_at(&[9; 4], &mut buf, 60).unwrap();
    let mut got = [0u8; 4];
    b.download(&buf, &mut got).unwrap();
    assert_eq!(got, [1, 2, 3, 0]);
    let mut other = b.alloc(64).unwrap();
    b.copy(&buf, &mut other).unwrap();
    let mut all = [0u8; 64];
    b.download(&other, &mut all).unwrap();
    assert_eq!(all[60..], [9; 4]);
    b.fill(&mut other, 7).unwrap();
    b.upload_pageable(&[5; 8], &mut other).unwrap();
    b.download(&other, &mut all).unwrap();
    assert_eq!((all[7], all[8]), (5, 7));
    let size = |e: GpuError| match e {
        GpuError::BufferSize { op, have, need } => (op, have, need),
        other => panic!("{other}"),
    };
    assert_eq!(
        size(b.upload(&[0; 65], &mut buf).unwrap_err()),
        ("upload", 64, 65)
    );
    assert_eq!(
        size(b.download(&buf, &mut [0; 65]).unwrap_err()),
        ("download", 64, 65)
    );
    assert_eq!(
        size(b.upload_at(&[0; 8], &mut buf, 57).unwrap_err()),
        ("upload_at", 64, 65)
    );
    let e = b.upload_pageable(&[0; 65], &mut buf).unwrap_err();
    assert_eq!(size(e), ("upload_pageable", 64, 65));
    let mut short = b.alloc(63).unwrap();
    assert_eq!(
        size(b.copy(&buf, &mut short).unwrap_err()),
        ("copy", 63, 64)
    );
    assert!(matches!(
        b.upload_at(&[0; 8], &mut buf, usize::MAX - 3),
        Err(GpuError::Overflow { .. })
    ));
    // Refused calls never reached the driver.
    let calls = log(&b);
    assert_eq!(calls.iter().filter(|c| c.starts_with("upload")).count(), 3);
    assert_eq!(calls.iter().filter(|c| *c == "download").count(), 3);
}

#[test]
fn buffers_of_another_device_or_backend_are_foreign() {
    let b = backend(2);
    let mut mine = b.alloc(64).unwrap();
    let foreign = |e: GpuError| matches!(e, GpuError::ForeignBuffer { .. });
    let mut elsewhere = Buffer::new(
        Box::new(FakeMem {
            bytes: vec![0; 64],
            addr: 0x1000,
            owned: false,
        }),
        DeviceKind::Cuda,
        1,
    );
    let mut hip = Buffer::new(Box::new(OtherMem), DeviceKind::Hip, 0);
    let mut not_ours = Buffer::new(Box::new(OtherMem), DeviceKind::Cuda, 0);
    for other in [&mut elsewhere, &mut hip, &mut not_ours] {
        assert!(foreign(b.fill(other, 0).unwrap_err()));
        assert!(foreign(b.download(other, &mut [0; 8]).unwrap_err()));
        assert!(foreign(b.upload(&[0; 8], other).unwrap_err()));
        assert!(foreign(b.copy(other, &mut mine).unwrap_err()));
        assert!(foreign(b.copy(&mine, other).unwrap_err()));
        let e = b.dequantize(&T, other, 1, &mut mine, OutputDType::F32);
        assert!(matches!(
            e,
            Err(GpuError::ForeignBuffer { op: "dequantize" })
        ));
    }
}

#[test]
fn allocations_hand_over_their_address_and_ownership() {
    let b = backend(3);
    let owned = b.alloc(64).unwrap();
    assert!(owned.owns_memory());
    let raw = owned.into_raw();
    assert_eq!(
        raw,
        crate::RawAllocation {
            ptr: 0x7f00_0000_0000,
            len: 64,
            device: (DeviceKind::Cuda, 0),
            owned: true,
        }
    );
}

#[test]
fn out_of_memory_has_one_shape_and_other_failures_name_the_call() {
    let b = backend(4);
    match b.alloc(DEVICE_BYTES + 1).unwrap_err() {
        GpuError::OutOfMemory {
            device,
            wanted,
            free,
            total,
        } => {
            assert_eq!(device, "cuda:0 (Fake)");
            assert_eq!(
                (wanted, free, total),
                (DEVICE_BYTES as u64 + 1, 1000, DEVICE_BYTES as u64)
            );
        }
        other => panic!("{other}"),
    }
    match b.alloc(BROKEN_ALLOC).unwrap_err() {
        GpuError::Driver { op, reason } => {
            assert_eq!(
                (op.as_str(), reason.as_str()),
                ("fakeMalloc(13)", "the device fell over")
            );
        }
        other => panic!("{other}"),
    }
    let e: GpuError = DriverError::new("hipFree", "busy").into();
    assert_eq!(e.to_string(), "hipFree failed: busy");
}

#[test]
fn launches_are_planned_with_the_devices_own_limits() {
    let mut fake = Fake::new(5, "nvrtc");
    fake.limits = DeviceLimits {
        max_threads_per_group: 128,
        max_groups: 3,
    };
    let b = GpuBackend::new(fake);
    let src = b.alloc(100 * 16).unwrap();
    let mut dst = b.alloc(100 * 32 * 2).unwrap();
    // 256 threads per group: more than this device runs.
    let e = b
        .dequantize(&WIDE, &src, 1, &mut dst, OutputDType::F16)
        .unwrap_err();
    assert!(matches!(e, GpuError::NoKernel { .. }), "{e}");
    // 100 blocks, 2 per group: 50 groups, capped at the device's 3.
    b.dequantize(&T, &src, 100, &mut dst, OutputDType::F16)
        .unwrap();
    b.dequantize_with_grid(&T, &src, 100, &mut dst, OutputDType::F16, Some(2))
        .unwrap();
    let calls = log(&b);
    let launches: Vec<&String> = calls.iter().filter(|c| c.starts_with("launch")).collect();
    assert_eq!(
        launches,
        [
            "launch t f16 3x64 0..1600 -> 0..6400",
            "launch t f16 2x64 0..1600 -> 0..6400"
        ]
    );
    // At offsets, within the buffers, on the compute queue or a lane of its own.
    for (queue, on) in [(Queue::Compute, ""), (Queue::Lane(3), "on Lane(3) ")] {
        b.dequantize_at(queue, &T, &src, 16, 99, &mut dst, 64, OutputDType::F16)
            .unwrap();
        assert_eq!(
            log(&b),
            [format!("launch {on}t f16 3x64 16..1600 -> 64..6400")]
        );
    }
    let e = b.dequantize_at(
        Queue::Compute,
        &T,
        &src,
        8,
        1,
        &mut dst,
        0,
        OutputDType::F16,
    );
    assert!(matches!(e, Err(GpuError::Misaligned { offset: 8, .. })));
    let e = b.dequantize(&T, &src, 101, &mut dst, OutputDType::F16);
    assert!(matches!(e, Err(GpuError::BufferSize { .. })));
    assert!(log(&b).is_empty(), "refused launches reach no driver");
}

#[test]
fn launches_on_a_callers_stream_are_checked_and_planned_alike() {
    let mut fake = Fake::new(15, "nvrtc");
    fake.limits.max_groups = 3;
    let b = GpuBackend::new(fake);
    let src = b.alloc(100 * 16).unwrap();
    let mut dst = b.alloc(100 * 32 * 4).unwrap();
    let mut other = Buffer::new(Box::new(OtherMem), DeviceKind::Cuda, 0);
    // SAFETY: the fake driver only logs the stream.
    unsafe {
        b.dequantize_on_stream(&T, &src, 100, &mut dst, OutputDType::F32, 0)
            .unwrap();
        b.dequantize_on_stream(&T, &src, 0, &mut dst, OutputDType::F32, 0)
            .unwrap();
        let e = b.dequantize_on_stream(&T, &src, 101, &mut dst, OutputDType::F32, 0);
        assert!(matches!(e, Err(GpuError::BufferSize { .. })), "{e:?}");
        let e = b.dequantize_on_stream(&T, &src, 1, &mut other, OutputDType::F32, 0);
        assert!(matches!(
            e,
            Err(GpuError::ForeignBuffer {
                op: "dequantize_on_stream"
            })
        ));
    }
    let calls = log(&b);
    let from = calls.iter().position(|c| c == "load t").unwrap();
    assert_eq!(
        calls[from..],
        [
            "load t",
            "on stream 0x0",
            "launch t f32 3x64 0..1600 -> 0..12800"
        ]
    );
}

#[test]
fn nothing_to_launch_loads_nothing_and_a_failed_launch_names_the_entry() {
    let mut fake = Fake::new(6, "nvrtc");
    fake.fail_launch = true;
    let b = GpuBackend::new(fake);
    let src = b.alloc(32).unwrap();
    let mut dst = b.alloc(256).unwrap();
    b.dequantize(&T, &src, 0, &mut dst, OutputDType::F32)
        .unwrap();
    assert_eq!(b.modules_built(), 0);
    match b.dequantize(&T, &src, 2, &mut dst, OutputDType::F32) {
        Err(GpuError::Launch {
            entry,
            file,
            reason,
        }) => {
            assert_eq!((entry, file), ("t_f32", "quant-t/kernel.hip"));
            assert_eq!(reason, "fakeLaunchKernel: illegal address");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn modules_are_built_once_per_scope_and_shared_while_a_backend_lives() {
    // Two backends of one context (two engine streams, say) share the module.
    let a = backend(7);
    let b = backend(7);
    a.prepare(&T).unwrap();
    b.prepare(&T).unwrap();
    assert_eq!((a.modules_built(), b.modules_built()), (1, 0));
    // Another context, or another source of kernels, builds its own.
    let c = backend(8);
    c.prepare(&T).unwrap();
    let d = GpuBackend::new(Fake::new(7, "kernel dir"));
    d.prepare(&T).unwrap();
    assert_eq!((c.modules_built(), d.modules_built()), (1, 1));
    // A failed build is not kept: the next use tries again.
    assert!(a.prepare(&BROKEN).is_err());
    assert!(b.prepare(&BROKEN).is_err());
    assert_eq!(a.modules_built() + b.modules_built(), 1);
    // Changing where kernels come from changes the scope.
    let b = b.with_driver(|f| f.scope.1 = "kernel dir");
    b.prepare(&T).unwrap();
    assert_eq!(b.modules_built(), 0, "d built it");
    b.prepare(&OTHER).unwrap();
    assert_eq!(b.modules_built(), 1);
    // Once every backend of a scope is gone, its modules are too.
    drop((a, b, d));
    let e = backend(7);
    e.prepare(&T).unwrap();
    assert_eq!(e.modules_built(), 1);
}

#[test]
fn concurrent_first_uses_build_once() {
    let b = backend(9);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| b.prepare(&T).unwrap());
        }
    });
    assert_eq!(b.modules_built(), 1);
}

#[test]
fn timed_runs_do_not_wait_for_each_other() {
    let b = backend(10);
    let runs = AtomicUsize::new(0);
    let ms = b
        .time_events(3, &mut || {
            runs.fetch_add(1, Ordering::SeqCst);
            b.driver().note("op");
            Ok(())
        })
        .unwrap();
    assert_eq!(ms, [1.0, 1.0, 1.0]);
    let run = ["record_timing", "op", "record_timing"];
    let mut want: Vec<&str> = run.repeat(3);
    want.extend(["elapsed_ms"; 3]);
    assert_eq!(log(&b), want, "every time is read after the last run");
    let e = b.time_events(2, &mut || {
        Err(GpuError::Unsupported {
            op: "x",
            reason: "y".into(),
        })
    });
    assert!(e.is_err());
}

#[test]
fn fences_wait_on_the_device_or_on_the_host() {
    let b = backend(11);
    let fence = b.record(Queue::Copy).unwrap();
    assert_eq!(fence.queue(), Queue::Copy);
    b.wait_fence(Queue::Compute, &fence).unwrap();
    b.wait_fence(Queue::Compute, &Fence::done(Queue::Copy))
        .unwrap();
    let waits = Arc::new(AtomicUsize::new(0));
    let other = Fence::new(Queue::Copy, Box::new(OtherFence(waits.clone())));
    b.wait_fence(Queue::Compute, &other).unwrap();
    assert_eq!(waits.load(Ordering::SeqCst), 1);
    assert_eq!(log(&b), ["record Copy", "wait_event Compute"]);
}

#[test]
fn async_uploads_take_only_this_drivers_page_locked_memory() {
    let b = backend(12);
    assert!(b.async_primitives());
    let mut dst = b.alloc(64).unwrap();
    let mut pinned = b.alloc_host(16).unwrap();
    pinned.as_mut_slice().unwrap().copy_from_slice(&[3; 16]);
    b.upload_async(Queue::Copy, &mut pinned, 4..12, &mut dst, 16)
        .unwrap();
    assert!(pinned.pending().is_some());
    // Ordinary memory is copied synchronously.
    let mut pageable = HostBuffer::pageable(8);
    b.upload_async(Queue::Copy, &mut pageable, 0..8, &mut dst, 0)
        .unwrap();
    assert_eq!(
        log(&b),
        ["alloc 64", "upload_async Copy 4..12 at 16", "upload 8 at 0"]
    );
    // Another context's page-locked memory, and ranges outside either buffer, are refused.
    let mut foreign = HostBuffer::new(Box::new(FakePinned(vec![0; 16], 99)));
    let e = b.upload_async(Queue::Copy, &mut foreign, 0..8, &mut dst, 0);
    assert!(matches!(
        e,
        Err(GpuError::ForeignBuffer {
            op: "upload_async (host buffer)"
        })
    ));
    assert!(b
        .upload_async(Queue::Copy, &mut pinned, 8..17, &mut dst, 0)
        .is_err());
    assert!(b
        .upload_async(Queue::Copy, &mut pinned, 0..16, &mut dst, 49)
        .is_err());
    assert!(log(&b).is_empty());
}

#[test]
fn wrapped_memory_is_checked_here_then_by_the_driver() {
    let b = backend(13);
    for (ptr, why) in [
        (0, "null"),
        (0x1008, "aligned to 16"),
        (u64::MAX - 15, "wraps"),
    ] {
        // SAFETY: refused before anything is done with the address.
        let e = unsafe { b.wrap_device_memory(ptr, 32) }.unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
    assert!(
        log(&b).is_empty(),
        "the driver is not asked about bad pointers"
    );
    // SAFETY: the fake driver never touches the address.
    match unsafe { b.wrap_device_memory(0x20_0000, 32) } {
        Err(GpuError::ForeignMemory { ptr, len, reason }) => {
            assert_eq!((ptr, len), (0x20_0000, 32));
            assert_eq!(reason, "not an allocation of this device");
        }
        other => panic!("{other:?}"),
    }
    // SAFETY: as above.
    let wrapped = unsafe { b.wrap_device_memory(0x1000, 32) }.unwrap();
    assert!(!wrapped.owns_memory());
    assert_eq!((wrapped.device_ptr(), wrapped.len()), (0x1000, 32));
    assert!(!wrapped.into_raw().owned);
    // SAFETY: the fake driver only logs the handle.
    unsafe { b.make_stream_wait(0x5000) }.unwrap();
    assert_eq!(
        log(&b),
        ["wrap 0x200000", "wrap 0x1000", "make_stream_wait 0x5000"]
    );
}

/// A vendor's public type: a wrapper with its own constructors.
struct Wrapper(GpuBackend<Fake>);

impl DelegateBackend for Wrapper {
    fn delegate(&self) -> &dyn Backend {
        &self.0
    }
}

#[test]
fn a_delegating_backend_forwards_every_method() {
    let w = Wrapper(backend(14));
    let b: &dyn Backend = &w;
    assert_eq!(b.info().name, "Fake");
    assert_eq!(b.mem_info().unwrap().free, 1000);
    assert!(b.async_primitives(), "not the trait's default");
    let mut buf = b.alloc(64).unwrap();
    let mut other = b.alloc(64).unwrap();
    b.upload(&[1; 4], &mut buf).unwrap();
    b.upload_at(&[2; 4], &mut buf, 4).unwrap();
    b.upload_pageable(&[3; 4], &mut other).unwrap();
    b.download(&buf, &mut [0; 4]).unwrap();
    b.fill(&mut other, 0).unwrap();
    b.copy(&buf, &mut other).unwrap();
    b.copy_on(Queue::Lane(2), &buf, &mut other).unwrap();
    assert_eq!(w.0.modules_built(), 0);
    b.prepare_kernel(&T).unwrap();
    assert_eq!(
        w.0.modules_built(),
        1,
        "built through the trait, not its default"
    );
    let mut out = b.alloc(256).unwrap();
    b.dequantize(&T, &buf, 2, &mut out, OutputDType::F32)
        .unwrap();
    b.dequantize_at(
        Queue::Compute,
        &T,
        &buf,
        16,
        2,
        &mut out,
        0,
        OutputDType::F32,
    )
    .unwrap();
    b.synchronize().unwrap();
    let mut host = b.alloc_host(8).unwrap();
    assert!(host.is_pinned());
    b.upload_async(Queue::Copy, &mut host, 0..8, &mut buf, 0)
        .unwrap();
    let fence = b.record(Queue::Compute).unwrap();
    b.wait_fence(Queue::Copy, &fence).unwrap();
    b.time_events(1, &mut || Ok(())).unwrap();
    // SAFETY: the fake driver never touches the addresses nor the stream.
    unsafe {
        b.wrap_device_memory(0x1000, 16).unwrap();
        b.make_stream_wait(0x10).unwrap();
        b.dequantize_on_stream(&T, &buf, 2, &mut out, OutputDType::F16, 0x20)
            .unwrap();
    }
    let calls = log(&w.0);
    for call in [
        "upload 4 at 4",
        "upload 4 at 0",
        "download",
        "memset",
        "copy Compute",
        "copy Lane(2)",
        "launch t f32 1x64 0..32 -> 0..256",
        "launch t f32 1x64 16..48 -> 0..256",
        "synchronize",
        "upload_async Copy 0..8 at 0",
        "record Compute",
        "wait_event Copy",
        "elapsed_ms",
        "wrap 0x1000",
        "make_stream_wait 0x10",
        "on stream 0x20",
        "launch t f16 1x64 0..32 -> 0..128",
    ] {
        assert!(calls.iter().any(|c| c == call), "{call} not in {calls:?}");
    }
}

#[test]
fn resident_groups_are_the_multiprocessors_times_the_kernels_occupancy() {
    let mut fake = Fake::new(8, "nvrtc");
    fake.info.multiprocessors = 132;
    let b = GpuBackend::new(fake);
    assert_eq!(
        b.resident_groups(&WIDE, OutputDType::F16).unwrap(),
        Some(132 * 8)
    );
    assert_eq!(
        b.resident_groups(&WIDE, OutputDType::F32).unwrap(),
        Some(132 * 4)
    );
    assert_eq!(
        b.resident_groups(&T, OutputDType::Bf16).unwrap(),
        Some(132 * 32)
    );
}
