//! quantforge → candle on one CUDA device, through one cudarc.
//!
//! candle's `CudaDevice` owns the context and the stream; quantforge loads onto that stream
//! (`CudaBackend::on_stream`), and each 2-D weight becomes a candle `Tensor` two ways:
//!
//! 1. quantforge's allocation handed over: `DeviceTensor::into_raw`, then cudarc's
//!    `upgrade_device_ptr` and `CudaStorage::wrap_cuda_slice` (candle frees it from then on);
//! 2. candle's allocation written by quantforge: `Tensor::zeros`, then `dequantize_into_ptr`.
//!
//! Both must hold the bits of quantforge's CPU reference rounded to f16, and `w.matmul(x)` in
//! candle (f16 in and out, cuBLAS accumulating in f32) must agree with the CPU within a
//! rounding-error bound.
//!
//! ```sh
//! ./build.sh && target/release/candle-interop [MODEL.gguf] [TENSOR]...
//! ```
//!
//! Default: `models/tiny-llama-q4_k_m.gguf` (run from the repository root), every 2-D tensor.
//! Exit status: 0 all passed, 1 a check failed, 2 no CUDA (or another error).

use std::error::Error;
use std::process::ExitCode;

use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Storage, Tensor};
use half::f16;
use quant_cuda::CudaBackend;
use quantforge::core::cpu::CpuPath;
use quantforge::core::OutputDType;
use quantforge::loader::{FallbackPolicy, GgufLoader, LoaderOptions};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("candle-interop: FAILED");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("candle-interop: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "models/tiny-llama-q4_k_m.gguf".into());
    let mut names: Vec<String> = args.collect();
    // cudarc panics when libcuda is missing; quantforge says so as an error.
    if let Err(e) = quant_cuda::device_count() {
        return Err(format!("this example needs an NVIDIA GPU: {e}").into());
    }

    // candle's device: a context, a stream, cuBLAS. quantforge queues its work on that stream.
    // It also opens cuBLAS and cuRAND, and cudarc panics if they are missing.
    let dev = std::panic::catch_unwind(|| CudaDevice::new_with_stream(0)).map_err(|_| {
        "candle could not open its CUDA device: are libcublas.so.13, libcublasLt.so.13 and \
         libcurand.so.10 on the library path?"
    })??;
    let stream = dev.cuda_stream();
    let backend = CudaBackend::on_stream(stream.clone())?;
    let device = Device::Cuda(dev.clone());
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

    let mut all_ok = true;
    for name in &names {
        let info = loader.tensor(name)?;
        if info.dims.len() != 2 {
            return Err(format!("{name} has shape {:?}, not a matrix", info.dims).into());
        }
        let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
        let reference = loader.dequantize_to_host(name, CpuPath::Reference)?;
        let w16: Vec<f16> = reference.iter().map(|&v| f16::from_f32(v)).collect();
        let x16: Vec<f16> = (0..cols).map(|i| f16::from_f32(test_value(i))).collect();
        let x = Tensor::from_vec(x16.clone(), (cols, 1), &device)?;

        // 1. quantforge allocates, candle takes the allocation over.
        let handed_over = {
            let raw = loader
                .load_tensor_to_gpu(name, &backend, OutputDType::F16)?
                .into_raw();
            // SAFETY: a device allocation of this context holding rows * cols f16 values, given
            // up by quantforge; the slice owns it from now on.
            let slice =
                unsafe { stream.upgrade_device_ptr::<f16>(raw.allocation.ptr, rows * cols) };
            let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
            Tensor::from_storage(storage, (rows, cols), BackpropOp::none(), false)
        };

        // 2. candle allocates, quantforge writes.
        let written = Tensor::zeros((rows, cols), DType::F16, &device)?;
        {
            let (storage, layout) = written.storage_and_layout();
            let Storage::Cuda(storage) = &*storage else {
                return Err("a CUDA tensor without CUDA storage".into());
            };
            // candle gives no mutable pointer outside the crate; the write is ordered by the
            // stream, which candle's own work on this tensor also uses.
            let (addr, _read) = storage.as_cuda_slice::<f16>()?.device_ptr(&stream);
            let addr = addr + (layout.start_offset() * 2) as u64;
            // SAFETY: the tensor outlives the call, holds rows * cols f16 values at `addr`, and
            // nothing else uses it meanwhile.
            unsafe {
                loader.dequantize_into_ptr(name, &backend, addr, rows * cols * 2, OutputDType::F16)
            }?;
        }

        let (want, scale) = host_matvec(&w16, &x16);
        let mut ok = true;
        let mut report = Vec::new();
        for (how, w) in [
            ("into_raw", &handed_over),
            ("dequantize_into_ptr", &written),
        ] {
            let bits_equal = w
                .flatten_all()?
                .to_vec1::<f16>()?
                .iter()
                .zip(&w16)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            let y = w
                .matmul(&x)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let (err, ratio) = check(&y, &want, &scale, cols);
            ok &= bits_equal && ratio <= 1.0;
            report.push(format!(
                "{how}: weights {}, max rel err {err:.2e} ({:.0}% of the bound)",
                if bits_equal { "bit-exact" } else { "DIFFER" },
                ratio * 100.0
            ));
        }
        all_ok &= ok;
        println!(
            "{name:<28} {rows:>6} x {cols:<6} {:<6} {} {}",
            info.ty.to_string(),
            report.join("; "),
            if ok { "PASS" } else { "FAIL" }
        );
    }
    // cudarc records errors of drops (freeing the handed-over memory among them) for later.
    stream.synchronize()?;
    stream.context().check_err()?;
    Ok(all_ok)
}

/// x: values in [-1, 1), exact in f16, the same on every run.
fn test_value(i: usize) -> f32 {
    let h = (i as u32).wrapping_mul(2_654_435_761).rotate_left(13) ^ 0x9E37_79B9;
    (h % 2048) as f32 / 1024.0 - 1.0
}

/// `W x` in f64 (f16 times f16 is exact there), and each row's `sum |w x|`.
fn host_matvec(w: &[f16], x: &[f16]) -> (Vec<f64>, Vec<f64>) {
    w.chunks_exact(x.len())
        .map(|row| {
            row.iter().zip(x).fold((0.0, 0.0), |(y, s), (w, x)| {
                let p = w.to_f64() * x.to_f64();
                (y + p, s + p.abs())
            })
        })
        .unzip()
}

/// Max over rows of `|y - want| / sum |w x|`, and of the error over its bound. cuBLAS sums the
/// `cols` products in f32 in an order of its own: at most `cols` roundings on any term's path,
/// so `|sum - W x| <= cols u S` (u = 2^-24, S = `sum |w x|`, first order); then y is rounded to
/// f16: half an f16 ulp, `2^-11 |y|`, or `2^-25` below the normal range. The bound is twice
/// the summation term plus the f16 rounding.
fn check(y: &[f32], want: &[f64], scale: &[f64], cols: usize) -> (f64, f64) {
    let u = f64::powi(2.0, -24);
    let (mut worst_rel, mut worst_ratio) = (0f64, 0f64);
    for ((&y, &w), &s) in y.iter().zip(want).zip(scale) {
        let err = (y as f64 - w).abs();
        let bound = 2.0 * cols as f64 * u * s + f64::powi(2.0, -11) * w.abs() + f64::powi(2.0, -25);
        if !err.is_finite() {
            return (f64::INFINITY, f64::INFINITY);
        }
        worst_rel = worst_rel.max(err / s.max(f64::MIN_POSITIVE));
        worst_ratio = worst_ratio.max(err / bound);
    }
    (worst_rel, worst_ratio)
}
