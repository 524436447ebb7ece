//! The host side of a whole-model load, measured piece by piece on CUDA device 0: the numbers
//! behind the loader's design in docs/performance.md ("Where the time goes").
//!
//! ```text
//! cargo run -p quant-cuda --release --example host_paths -- pin
//! cargo run -p quant-cuda --release --example host_paths -- memcpy FILE
//! cargo run -p quant-cuda --release --example host_paths -- register FILE
//! cargo run -p quant-cuda --release --example host_paths -- readers FILE
//! ```
//!
//! * `pin`: what pinning a ring of 16 × 2 MiB costs through the backend (`alloc_host`), on one
//!   thread and on eight.
//! * `memcpy`: threads copying a mapped file (in the page cache) into private 2 MiB buffers,
//!   alone and while the copy engine streams a pinned buffer to the device: how much copying the
//!   host's memory can take while a load's DMA runs.
//! * `register`: DMA straight from the file's page-cache pages, registered with the driver a
//!   window at a time (`cuMemHostRegister`, read-only), on one thread and several.
//! * `readers`: the loader's reader loop alone (each reader fills its own pinned slots from the
//!   mapping and queues their copies), without kernels, outputs or bookkeeping.
//! * `readers-wc`: the same loop on raw driver calls with `cuMemHostAlloc` slots, plain and
//!   write-combined.
//!
//! Driver calls the backend does not expose are made through `cudarc::driver::sys` directly:
//! this is a measuring tool, not an API.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cudarc::driver::{sys, CudaContext};
use quant_cuda::CudaBackend;
use quant_gpu::{Backend, Queue};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn ok(r: sys::CUresult, what: &str) -> Res<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what}: {r:?}").into())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn gbs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn map_file(path: &str) -> Res<memmap2::Mmap> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only mapping of a file nobody changes during the measurement.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    // Bring it into the page cache, as a model already read once is.
    let sum = map.iter().step_by(4096).fold(0u8, |a, &b| a ^ b);
    std::hint::black_box(sum);
    Ok(map)
}

fn pin() -> Res<()> {
    let be = CudaBackend::new(0)?;
    for threads in [1usize, 8] {
        let t0 = Instant::now();
        let bufs = std::thread::scope(|s| -> Res<Vec<_>> {
            let hs: Vec<_> = (0..threads)
                .map(|c| {
                    let be = &be;
                    s.spawn(move || {
                        (c..16)
                            .step_by(threads)
                            .map(|_| be.alloc_host(2 << 20))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in hs {
                all.extend(h.join().map_err(|_| "thread panicked")??);
            }
            Ok(all)
        })?;
        let pinned = t0.elapsed();
        let t0 = Instant::now();
        drop(bufs);
        println!(
            "pin 16 x 2 MiB on {threads} thread(s): {:.2} ms; freed in {:.2} ms",
            ms(pinned),
            ms(t0.elapsed())
        );
    }
    Ok(())
}

fn memcpy(path: &str) -> Res<()> {
    let map = map_file(path)?;
    let be = CudaBackend::new(0)?;
    let dma_bytes = 256usize << 20;
    let mut pinned = be.alloc_host(dma_bytes)?;
    let mut dev = be.alloc(dma_bytes)?;
    let chunk = 2usize << 20;
    let n_chunks = map.len() / chunk;
    for with_dma in [false, true] {
        for threads in [1usize, 4, 8, 12, 15] {
            let (stop, next) = (AtomicBool::new(false), AtomicUsize::new(0));
            let (wall, dma) = std::thread::scope(|s| -> Res<(Duration, f64)> {
                let (be, stop, pinned, dev) = (&be, &stop, &mut pinned, &mut dev);
                let dma = with_dma.then(|| {
                    s.spawn(move || -> Result<f64, quant_gpu::GpuError> {
                        let (t, mut done) = (Instant::now(), 0usize);
                        while !stop.load(Ordering::SeqCst) {
                            for a in (0..dma_bytes).step_by(8 << 20) {
                                be.upload_async(Queue::Copy, pinned, a..a + (8 << 20), dev, a)?;
                            }
                            pinned.as_mut_slice()?;
                            done += dma_bytes;
                        }
                        Ok(gbs(done, t.elapsed()))
                    })
                });
                std::thread::sleep(Duration::from_millis(20));
                let t0 = Instant::now();
                std::thread::scope(|s2| {
                    for _ in 0..threads {
                        let (map, next) = (&map, &next);
                        s2.spawn(move || {
                            let mut buf = vec![0u8; chunk];
                            loop {
                                let i = next.fetch_add(1, Ordering::SeqCst);
                                if i >= n_chunks {
                                    break;
                                }
                                buf.copy_from_slice(&map[i * chunk..(i + 1) * chunk]);
                                std::hint::black_box(&buf);
                            }
                        });
                    }
                });
                let wall = t0.elapsed();
                stop.store(true, Ordering::SeqCst);
                let dma = match dma {
                    Some(h) => h.join().map_err(|_| "thread panicked")??,
                    None => 0.0,
                };
                Ok((wall, dma))
            })?;
            println!(
                "memcpy on {threads:>2} thread(s){}: {:.1} GB/s of file bytes; DMA meanwhile {dma:.1} GB/s",
                if with_dma { " with DMA" } else { "" },
                gbs(n_chunks * chunk, wall),
            );
        }
    }
    Ok(())
}

fn register(path: &str) -> Res<()> {
    let map = map_file(path)?;
    let ctx = CudaContext::new(0)?;
    for window_mib in [8usize, 32, 128] {
        for threads in [1usize, 4] {
            let window = window_mib << 20;
            let n = map.len().div_ceil(window);
            let next = AtomicUsize::new(0);
            let t0 = Instant::now();
            let phases = std::thread::scope(|s| -> Res<[Duration; 3]> {
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        let (ctx, map, next) = (&ctx, &map, &next);
                        s.spawn(move || -> Result<[Duration; 3], String> {
                            ctx.bind_to_thread().map_err(|e| e.to_string())?;
                            let mut ph = [Duration::ZERO; 3];
                            let mut dev: sys::CUdeviceptr = 0;
                            // SAFETY: plain driver calls on this thread's bound context; every
                            // host range lies inside the mapping, which outlives the calls, and
                            // is unregistered after its copy has completed.
                            unsafe {
                                ok(sys::cuMemAlloc_v2(&mut dev, window), "alloc")
                                    .map_err(|e| e.to_string())?;
                                loop {
                                    let i = next.fetch_add(1, Ordering::SeqCst);
                                    if i >= n {
                                        break;
                                    }
                                    let a = i * window;
                                    let len = window.min(map.len() - a);
                                    let p = map[a..].as_ptr() as *mut std::ffi::c_void;
                                    let t = Instant::now();
                                    let flags = sys::CU_MEMHOSTREGISTER_READ_ONLY;
                                    ok(sys::cuMemHostRegister_v2(p, len, flags), "register")
                                        .map_err(|e| e.to_string())?;
                                    ph[0] += t.elapsed();
                                    let t = Instant::now();
                                    ok(sys::cuMemcpyHtoD_v2(dev, p, len), "copy")
                                        .map_err(|e| e.to_string())?;
                                    ph[1] += t.elapsed();
                                    let t = Instant::now();
                                    ok(sys::cuMemHostUnregister(p), "unregister")
                                        .map_err(|e| e.to_string())?;
                                    ph[2] += t.elapsed();
                                }
                                sys::cuMemFree_v2(dev);
                            }
                            Ok(ph)
                        })
                    })
                    .collect();
                let mut sum = [Duration::ZERO; 3];
                for h in hs {
                    let ph = h.join().map_err(|_| "thread panicked")??;
                    (0..3).for_each(|k| sum[k] += ph[k]);
                }
                Ok(sum)
            })?;
            let wall = t0.elapsed();
            println!(
                "register {window_mib:>3} MiB windows on {threads} thread(s): {:.1} ms = {:.1} GB/s; summed register {:.1} ms, copy {:.1} ms, unregister {:.1} ms",
                ms(wall),
                gbs(map.len(), wall),
                ms(phases[0]),
                ms(phases[1]),
                ms(phases[2])
            );
        }
    }
    Ok(())
}

fn readers(path: &str) -> Res<()> {
    let map = map_file(path)?;
    let be = CudaBackend::new(0)?;
    for (threads, slot_mib, two_queues) in [
        (8usize, 2usize, false),
        (8, 2, true),
        (8, 4, false),
        (8, 4, true),
    ] {
        let slot = slot_mib << 20;
        let n = map.len().div_ceil(slot);
        let next = AtomicUsize::new(0);
        let t0 = Instant::now();
        std::thread::scope(|s| -> Res<()> {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let (be, map, next) = (&be, &map, &next);
                    s.spawn(move || -> Result<(), quant_gpu::GpuError> {
                        let mut dev = be.alloc(2 * slot)?;
                        let mut ring = [be.alloc_host(slot)?, be.alloc_host(slot)?];
                        let mut k = 0;
                        loop {
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            if i >= n {
                                break;
                            }
                            let a = i * slot;
                            let len = slot.min(map.len() - a);
                            let host = &mut ring[k];
                            host.as_mut_slice()?[..len].copy_from_slice(&map[a..a + len]);
                            // Alternate batches on the second queue: a second copy engine.
                            let q = if two_queues && i % 2 == 1 {
                                Queue::Compute
                            } else {
                                Queue::Copy
                            };
                            be.upload_async(q, host, 0..len, &mut dev, k * slot)?;
                            k ^= 1;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().map_err(|_| "thread panicked")??;
            }
            Ok(())
        })?;
        be.synchronize()?;
        let wall = t0.elapsed();
        println!(
            "readers {threads:>2} x 2 slots of {slot_mib} MiB, two queues {two_queues}: {:.1} ms = {:.1} GB/s (pinning included)",
            ms(wall),
            gbs(map.len(), wall)
        );
    }
    Ok(())
}

/// The reader loop on raw driver calls, with its slots from `cuMemHostAlloc`, plain or
/// write-combined (the CPU's writes bypass its caches, so the copy engine reads memory no core
/// holds dirty). Pinning is timed apart from streaming.
fn readers_wc(path: &str) -> Res<()> {
    let map = map_file(path)?;
    let ctx = CudaContext::new(0)?;
    let slot = 2usize << 20;
    for write_combined in [false, true, false, true] {
        let n = map.len().div_ceil(slot);
        let next = AtomicUsize::new(0);
        let mut stream: sys::CUstream = std::ptr::null_mut();
        // SAFETY: plain driver calls on this thread's bound context.
        unsafe { ok(sys::cuStreamCreate(&mut stream, 1), "stream")? };
        let stream = stream as usize;
        let pinning = AtomicUsize::new(0);
        let t0 = Instant::now();
        std::thread::scope(|s| -> Res<()> {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (ctx, map, next, pinning) = (&ctx, &map, &next, &pinning);
                    s.spawn(move || -> Result<(), String> {
                        let e = |e: Box<dyn std::error::Error>| e.to_string();
                        ctx.bind_to_thread().map_err(|e| e.to_string())?;
                        let stream = stream as sys::CUstream;
                        let mut flags = sys::CU_MEMHOSTALLOC_PORTABLE;
                        if write_combined {
                            flags |= sys::CU_MEMHOSTALLOC_WRITECOMBINED;
                        }
                        // SAFETY: each slot is written only after the event recorded after its
                        // last copy has completed, and freed after the stream is synchronized;
                        // source ranges lie inside the mapping.
                        unsafe {
                            let t = Instant::now();
                            let mut dev: sys::CUdeviceptr = 0;
                            ok(sys::cuMemAlloc_v2(&mut dev, 2 * slot), "alloc").map_err(e)?;
                            let mut ptrs = [std::ptr::null_mut::<std::ffi::c_void>(); 2];
                            let mut evs = [std::ptr::null_mut(); 2];
                            for k in 0..2 {
                                ok(sys::cuMemHostAlloc(&mut ptrs[k], slot, flags), "host alloc")
                                    .map_err(e)?;
                                ok(sys::cuEventCreate(&mut evs[k], 2), "event").map_err(e)?;
                                ok(sys::cuEventRecord(evs[k], stream), "record").map_err(e)?;
                            }
                            pinning.fetch_add(t.elapsed().as_nanos() as usize, Ordering::SeqCst);
                            let mut k = 0;
                            loop {
                                let i = next.fetch_add(1, Ordering::SeqCst);
                                if i >= n {
                                    break;
                                }
                                let a = i * slot;
                                let len = slot.min(map.len() - a);
                                ok(sys::cuEventSynchronize(evs[k]), "sync").map_err(e)?;
                                std::ptr::copy_nonoverlapping(
                                    map[a..].as_ptr(),
                                    ptrs[k] as *mut u8,
                                    len,
                                );
                                let d = dev + (k * slot) as u64;
                                ok(sys::cuMemcpyHtoDAsync_v2(d, ptrs[k], len, stream), "copy")
                                    .map_err(e)?;
                                ok(sys::cuEventRecord(evs[k], stream), "record").map_err(e)?;
                                k ^= 1;
                            }
                            ok(sys::cuStreamSynchronize(stream), "sync").map_err(e)?;
                            for k in 0..2 {
                                sys::cuMemFreeHost(ptrs[k]);
                                sys::cuEventDestroy_v2(evs[k]);
                            }
                            sys::cuMemFree_v2(dev);
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().map_err(|_| "thread panicked")??;
            }
            Ok(())
        })?;
        let wall = t0.elapsed();
        println!(
            "raw readers 8 x 2 slots of 2 MiB, write-combined {write_combined}: {:.1} ms = {:.1} GB/s; pinning {:.1} ms summed over readers",
            ms(wall),
            gbs(map.len(), wall),
            pinning.load(Ordering::SeqCst) as f64 / 1e6
        );
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let file = || args.get(2).map(String::as_str).ok_or("give a file");
    match args.get(1).map(String::as_str) {
        Some("pin") => pin(),
        Some("memcpy") => memcpy(file()?),
        Some("register") => register(file()?),
        Some("readers") => readers(file()?),
        Some("readers-wc") => readers_wc(file()?),
        _ => Err(
            "usage: host_paths pin | memcpy FILE | register FILE | readers FILE | readers-wc FILE"
                .into(),
        ),
    }
}
