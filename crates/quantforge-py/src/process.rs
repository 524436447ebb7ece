//! State that belongs to one process and must not be used across `fork()`: the thread pool
//! that CPU loads run on, and the GPU driver.
//!
//! A forked child has only the thread that called `fork`. Rayon's global pool would still
//! believe its worker threads exist, and the first parallel loop would wait for them forever;
//! so CPU loads run on a pool of this module's, made again (and the parent's abandoned, never
//! touched) in any process that finds the pool was made by another process id. The CUDA driver
//! does not survive a fork either: a child of a process that opened a GPU is refused a GPU with
//! an error saying so, and leaves the parent's device memory alone.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// The pool of one process.
struct Pool {
    pid: u32,
    pool: rayon::ThreadPool,
}

static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

/// The process that opened a GPU backend (or asked the driver for devices), 0 for none.
static GPU_PID: AtomicU32 = AtomicU32::new(0);

/// This process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// The thread pool of this process, made on first use in each process. Pools are never freed:
/// a parent's pool seen from a forked child has no threads, and dropping it there would wait
/// on them.
pub(crate) fn pool() -> Result<&'static rayon::ThreadPool, String> {
    let me = pid();
    let current = POOL.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in POOL comes from Box::into_raw below and is never freed.
    if let Some(p) = unsafe { current.as_ref() } {
        if p.pid == me {
            return Ok(&p.pool);
        }
    }
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("quantforge-{i}"))
        .build()
        .map_err(|e| format!("starting the thread pool: {e}"))?;
    let fresh = Box::into_raw(Box::new(Pool {
        pid: me,
        pool: built,
    }));
    match POOL.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just stored; never freed.
        Ok(_) => Ok(unsafe { &(*fresh).pool }),
        Err(_) => {
            // Another thread of this process made one first: use it, and end ours (its
            // threads are this process's, so it can be dropped).
            // SAFETY: `fresh` was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            pool()
        }
    }
}

/// Runs `f` on this process's pool (so that its parallel loops use it, not rayon's global
/// pool).
pub(crate) fn install<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    Ok(pool()?.install(f))
}

/// Records that this process is about to use the GPU driver.
pub(crate) fn note_gpu_use() {
    GPU_PID.store(pid(), Ordering::SeqCst);
}

/// The id of the process that used the GPU driver, when that is not this one: this process was
/// forked from it, and CUDA contexts, streams and device memory do not survive a fork.
pub(crate) fn gpu_used_by_parent() -> Option<u32> {
    match GPU_PID.load(Ordering::SeqCst) {
        0 => None,
        p if p == pid() => None,
        p => Some(p),
    }
}

/// The error a forked child gets when it asks for a GPU its parent had opened.
pub(crate) fn forked_gpu_error(parent: u32) -> String {
    format!(
        "this process was forked from process {parent} after that one had used the GPU, and \
         the GPU driver (CUDA) does not survive a fork: load on device='cpu' here, or start \
         workers with multiprocessing's 'spawn' or 'forkserver' method"
    )
}
