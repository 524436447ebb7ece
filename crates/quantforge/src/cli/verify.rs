//! `quantforge verify FILE [--device D]`: device bits against the CPU reference, per tensor.
//! Integer tensors (indices or ids, kept as they are by every load) are skipped with a note.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use quantforge::core::cpu::CpuPath;
use quantforge::core::OutputDType;
use quantforge::gguf::Escaped;
use quantforge::gpu::DeviceSpec;
use quantforge::loader::{GgufLoader, LoadError};

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file.
    file: PathBuf,
    /// The device to check: auto, cuda[:N], hip[:N] (cpu checks the fast CPU path).
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    #[command(flatten)]
    read: super::ReadArgs,
}

/// Counts values whose bits differ (a NaN matches any NaN: GPUs return a canonical NaN).
fn mismatches(reference: &[f32], got: &[u8]) -> usize {
    reference
        .iter()
        .zip(got.chunks_exact(4))
        .filter(|(r, g)| {
            let g = f32::from_le_bytes([g[0], g[1], g[2], g[3]]);
            !(r.to_bits() == g.to_bits() || (r.is_nan() && g.is_nan()))
        })
        .count()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let loader = GgufLoader::open_with(&a.file, a.read.options(Default::default()))?;
    let backend = super::open_device(a.device)?;
    let mut bad = 0;
    let mut unsupported = 0;
    let mut kept = 0;
    writeln!(
        out,
        "{:<32} {:<8} {:>12} {:>10}  result",
        "tensor", "type", "elements", "differ"
    )?;
    for t in loader.file().tensors() {
        let skipped = match loader.format_of(&t) {
            Ok(_) => None,
            Err(LoadError::IntegerTensor { .. }) => {
                kept += 1;
                Some("skipped: integer, kept as it is")
            }
            Err(_) => {
                unsupported += 1;
                Some("unsupported type")
            }
        };
        if let Some(why) = skipped {
            writeln!(
                out,
                "{:<32} {:<8} {:>12} {:>10}  {why}",
                Escaped(&t.name),
                t.ty.to_string(),
                t.n_elements,
                "-"
            )?;
            continue;
        }
        let reference = loader.dequantize_to_host(&t.name, CpuPath::Reference)?;
        let got: Vec<u8> = match &backend {
            Some(b) => {
                let (dt, load) = loader.load_tensor(&t.name, b.as_ref(), OutputDType::F32)?;
                let bytes = dt.download(b.as_ref())?;
                if let quantforge::loader::LoadPath::Fallback(why) = &load.path {
                    eprintln!(
                        "warning: '{}' fell back to the CPU: {why}",
                        Escaped(&t.name)
                    );
                }
                bytes
            }
            None => {
                let v = loader.dequantize_to_host(&t.name, CpuPath::Fast)?;
                quantforge::core::cpu::encode_as(&v, OutputDType::F32)
            }
        };
        let n = mismatches(&reference, &got);
        bad += usize::from(n > 0);
        writeln!(
            out,
            "{:<32} {:<8} {:>12} {:>10}  {}",
            Escaped(&t.name),
            t.ty.to_string(),
            t.n_elements,
            n,
            if n == 0 { "bit-exact" } else { "DIFFERS" }
        )?;
    }
    if bad > 0 {
        bail!("{bad} tensor(s) differ from the CPU reference");
    }
    writeln!(
        out,
        "all supported tensors bit-exact ({unsupported} of unsupported type skipped, {kept} \
         integer tensor(s) skipped: kept as they are, not dequantized)"
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::mismatches;

    #[test]
    fn nan_matches_any_nan_and_zero_signs_count() {
        let r = [f32::NAN, 0.0, -0.0, 1.5];
        let mut g = Vec::new();
        for v in [f32::from_bits(0x7fc0_0001), 0.0, 0.0, 1.5] {
            g.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(mismatches(&r, &g), 1);
    }
}
