//! An inference engine's side of quantforge's hand-over API, on CUDA through cudarc.
//!
//! The engine owns the context and the stream; quantforge loads weights onto that stream
//! (`CudaBackend::on_stream`), and the engine's own kernel reads them, ordered by the stream
//! alone. Two ways to hand a weight over:
//!
//! 1. quantforge allocates: `load_tensor_to_gpu` returns a `DeviceTensor`, whose
//!    `device_ptr()` the kernel takes as a `u64`;
//! 2. the engine allocates: a cudarc `CudaSlice<f16>`, filled by `dequantize_into_ptr`.
//!
//! Each weight W (GGUF shape `[ne0, ne1]`: a row-major `ne1 × ne0` matrix, `ne0` contiguous) is
//! multiplied by a vector, `y = W x` (f16 weights, f32 x, f32 accumulation), and y is checked
//! against the CPU: quantforge's f32 reference rounded to f16, multiplied in f64.
//!
//! ```sh
//! cargo run --release -p quantforge --example engine_matvec -- [MODEL.gguf] [TENSOR]... [--device N]
//! ```
//!
//! Default: `models/tiny-llama-q4_k_m.gguf`, every 2-D tensor of it, device 0. Exit status: 0 all
//! passed, 1 a check failed, 2 no CUDA (or another error).

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;

use half::f16;
use quant_cuda::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use quant_cuda::cudarc::{driver::CudaContext, nvrtc};
use quant_cuda::CudaBackend;
use quantforge::core::cpu::CpuPath;
use quantforge::core::OutputDType;
use quantforge::gpu::Backend;
use quantforge::loader::{FallbackPolicy, GgufLoader, LoaderOptions};

/// The engine's kernel: one warp per row, each lane summing every 32nd product, then a
/// butterfly over the warp. The weight arrives as a plain address, the way an engine holds
/// memory it did not allocate.
const MATVEC: &str = r#"
extern "C" __global__ void matvec_f16(unsigned long long w_addr, const float* x, float* y,
                                      unsigned int rows, unsigned int cols) {
    unsigned int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    unsigned int lane = threadIdx.x % 32;
    if (row >= rows) return; // whole warps leave together
    const unsigned short* w = (const unsigned short*)w_addr + (unsigned long long)row * cols;
    float acc = 0.0f;
    for (unsigned int c = lane; c < cols; c += 32) {
        float wf;
        asm("cvt.f32.f16 %0, %1;" : "=f"(wf) : "h"(w[c]));
        acc += wf * x[c];
    }
    for (int d = 16; d > 0; d /= 2) acc += __shfl_down_sync(0xffffffffu, acc, d);
    if (lane == 0) y[row] = acc;
}
"#;
const WARPS_PER_BLOCK: u32 = 4;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("engine_matvec: FAILED");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("engine_matvec: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, Box<dyn Error>> {
    let (path, mut names, ordinal) = parse_args()?;
    // cudarc loads libcuda and libnvrtc on first use and panics if they are missing: ask
    // quantforge first, which says so as an error.
    match quant_cuda::device_count() {
        Ok(n) if n > ordinal => {}
        Ok(n) => return Err(format!("no CUDA device {ordinal} (the driver reports {n})").into()),
        Err(e) => return Err(format!("this example needs an NVIDIA GPU: {e}").into()),
    }
    if CudaBackend::nvrtc_version().is_none() {
        return Err("this example compiles its kernel with NVRTC, and libnvrtc is missing".into());
    }

    // The engine: its context, its stream, its kernel.
    let ctx = CudaContext::new(ordinal)?;
    let stream = ctx.new_stream()?;
    let matvec = ctx
        .load_module(nvrtc::compile_ptx(MATVEC)?)?
        .load_function("matvec_f16")?;
    // quantforge on the engine's stream: its kernels are queued there, before the engine's.
    let backend = CudaBackend::on_stream(stream.clone())?;
    // Deny: a kernel that cannot run is an error here, not a silent CPU fallback.
    let options = LoaderOptions {
        fallback: FallbackPolicy::Deny,
        ..LoaderOptions::default()
    };
    let loader = GgufLoader::open_with(&path, options)?;
    if names.is_empty() {
        names = loader
            .file()
            .tensors()
            .filter(|t| t.dims.len() == 2 && !t.ty.is_integer())
            .map(|t| t.name)
            .collect();
    }
    println!("{}: {} tensor(s) on {}", path, names.len(), backend.info());

    let mut all_ok = true;
    for name in &names {
        let info = loader.tensor(name)?;
        if info.dims.len() != 2 {
            return Err(format!("{name} has shape {:?}, not a matrix", info.dims).into());
        }
        let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
        let x: Vec<f32> = (0..cols).map(test_value).collect();
        let (want, scale) = host_matvec(&loader, name, rows, &x)?;
        let x_dev = stream.clone_htod(&x)?;

        // 1. quantforge's memory: the tensor's device address. The engine does not synchronise
        //    between the load and its kernel: both are on its stream, in that order.
        let tensor = loader.load_tensor_to_gpu(name, &backend, OutputDType::F16)?;
        let y_loaded = matvec_on(&stream, &matvec, tensor.device_ptr(), &x_dev, rows, cols)?;
        // Done with it: the tensor is ours, and its memory is freed now.
        drop(tensor);

        // 2. The engine's memory: a cudarc allocation quantforge writes into.
        let mut w: CudaSlice<f16> = stream.alloc_zeros(rows * cols)?;
        let bytes = w.num_bytes();
        {
            // `device_ptr_mut`: cudarc records the write, so later readers on any stream wait.
            let (addr, _write) = w.device_ptr_mut(&stream);
            // SAFETY: `w` outlives the call and nothing else uses it meanwhile.
            unsafe { loader.dequantize_into_ptr(name, &backend, addr, bytes, OutputDType::F16) }?;
        }
        let y_engine = {
            let (addr, _read) = w.device_ptr(&stream);
            matvec_on(&stream, &matvec, addr, &x_dev, rows, cols)?
        };

        let (err_loaded, ok_loaded) = check(&y_loaded, &want, &scale, cols);
        let (err_engine, ok_engine) = check(&y_engine, &want, &scale, cols);
        // Same weights, same kernel: the two hand-overs must give the same bits.
        let same = y_loaded
            .iter()
            .zip(&y_engine)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        let ok = ok_loaded && ok_engine && same;
        all_ok &= ok;
        println!(
            "{name:<28} {:>6} x {:<6} {:<6} max rel err: device_ptr {err_loaded:.2e}, \
             dequantize_into_ptr {err_engine:.2e} (tol {:.2e}){} {}",
            rows,
            cols,
            info.ty.to_string(),
            tolerance(cols),
            if same { "" } else { ", the two differ" },
            if ok { "PASS" } else { "FAIL" },
        );
    }
    Ok(all_ok)
}

/// `[MODEL] [TENSOR]... [--device N]`.
fn parse_args() -> Result<(String, Vec<String>, usize), Box<dyn Error>> {
    let mut path = None;
    let mut names = Vec::new();
    let mut ordinal = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => {
                let n = args.next().ok_or("--device needs an ordinal")?;
                ordinal = n.parse().map_err(|_| format!("bad ordinal {n:?}"))?;
            }
            "-h" | "--help" => {
                println!("usage: engine_matvec [MODEL.gguf] [TENSOR]... [--device N]");
                std::process::exit(0);
            }
            _ if path.is_none() => path = Some(a),
            _ => names.push(a),
        }
    }
    let path = path.unwrap_or_else(|| "models/tiny-llama-q4_k_m.gguf".into());
    Ok((path, names, ordinal))
}

/// x: values in [-1, 1), the same on every run.
fn test_value(i: usize) -> f32 {
    let h = (i as u32).wrapping_mul(2_654_435_761).rotate_left(13) ^ 0x9E37_79B9;
    (h % 2048) as f32 / 1024.0 - 1.0
}

/// The CPU's answer: quantforge's reference (ggml's own code) rounded to f16 as the kernel
/// does, times x in f64; and for each row `sum |w x|`, the scale of its rounding error.
fn host_matvec(
    loader: &GgufLoader,
    name: &str,
    rows: usize,
    x: &[f32],
) -> Result<(Vec<f64>, Vec<f64>), Box<dyn Error>> {
    let w = loader.dequantize_to_host(name, CpuPath::Reference)?;
    let (mut y, mut scale) = (vec![0f64; rows], vec![0f64; rows]);
    for (r, row) in w.chunks_exact(x.len()).enumerate() {
        for (&w, &x) in row.iter().zip(x) {
            let p = f16::from_f32(w).to_f64() * x as f64;
            y[r] += p;
            scale[r] += p.abs();
        }
    }
    Ok((y, scale))
}

/// Launches the engine's kernel on `stream` with the weight at `w_addr` and returns y.
fn matvec_on(
    stream: &Arc<CudaStream>,
    f: &CudaFunction,
    w_addr: u64,
    x: &CudaSlice<f32>,
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>, Box<dyn Error>> {
    let mut y = stream.alloc_zeros::<f32>(rows)?;
    let (n_rows, n_cols) = (u32::try_from(rows)?, u32::try_from(cols)?);
    let cfg = LaunchConfig {
        grid_dim: (n_rows.div_ceil(WARPS_PER_BLOCK), 1, 1),
        block_dim: (32 * WARPS_PER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(f);
    launch
        .arg(&w_addr)
        .arg(x)
        .arg(&mut y)
        .arg(&n_rows)
        .arg(&n_cols);
    // SAFETY: the arguments match the kernel's signature; the weight holds rows * cols f16
    // values, x cols and y rows f32.
    unsafe { launch.launch(cfg) }?;
    Ok(stream.clone_dtoh(&y)?) // waits for the stream
}

/// Tolerance of the kernel's f32 sum, relative to `sum |w x|`. Each term's path through the
/// sum has at most `k + 5` roundings: its product, at most `k - 1` additions in its lane
/// (`k = ceil(cols / 32)` terms per lane) and five butterfly steps (a fused multiply-add only
/// removes one). So `|y - W x| <= (k + 5) u sum |w x|` (u = 2^-24) to first order, whatever the
/// order of the additions; the tolerance is twice that, so that second-order terms never count.
/// The reference is exact enough: f16 times f32 is exact in f64, and the f64 sum errs by about
/// 2^-53 relative. A row whose terms cancel has a tiny y, so the error is measured against
/// `sum |w x|`, not against y.
fn tolerance(cols: usize) -> f64 {
    let roundings = cols.div_ceil(32) + 5;
    2.0 * roundings as f64 * f64::powi(2.0, -24)
}

/// Max over rows of `|y - want| / sum |w x|`, and whether it is within [`tolerance`].
fn check(y: &[f32], want: &[f64], scale: &[f64], cols: usize) -> (f64, bool) {
    let mut worst = 0f64;
    for ((&y, &w), &s) in y.iter().zip(want).zip(scale) {
        let err = (y as f64 - w).abs() / s.max(f64::MIN_POSITIVE);
        if !err.is_finite() || !y.is_finite() {
            return (f64::INFINITY, false);
        }
        worst = worst.max(err);
    }
    (worst, worst <= tolerance(cols))
}
