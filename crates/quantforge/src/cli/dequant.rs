//! `quantforge dequant FILE -o OUT.gguf [--device D] [--tensor NAME]... [--skip-unsupported]`.
//!
//! Every tensor becomes F32, except integer tensors (I8, I16, I32, I64: indices or ids, not
//! weights), which are copied unchanged with their own type.

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quantforge::core::cpu::CpuPath;
use quantforge::core::{GgmlType, OutputDType};
use quantforge::gguf::{Escaped, GgufWriter, MetaValue};
use quantforge::gpu::DeviceSpec;
use quantforge::loader::{GgufLoader, LoadError};

/// Arguments of `dequant`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file to read.
    file: PathBuf,
    /// Where to write the GGUF v3 file (all F32, except integer tensors, copied unchanged).
    #[arg(short, long)]
    output: PathBuf,
    /// Where to dequantize: auto, cpu, cuda[:N], hip[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Only these tensors (repeatable). Default: all.
    #[arg(long = "tensor")]
    tensors: Vec<String>,
    /// Leave out tensors of types no linked format handles (listed in a warning) instead of
    /// failing.
    #[arg(long)]
    skip_unsupported: bool,
    #[command(flatten)]
    read: super::ReadArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let loader = GgufLoader::open_with(&a.file, a.read.options(Default::default()))?;
    let file = loader.file();
    let backend = super::open_device(a.device)?;

    let selected: Vec<_> = if a.tensors.is_empty() {
        file.tensors().collect()
    } else {
        a.tensors
            .iter()
            .map(|n| loader.tensor(n))
            .collect::<Result<_, _>>()?
    };

    let mut skipped = Vec::new();
    let mut todo = Vec::new();
    let mut kept = Vec::new();
    for t in selected {
        match loader.format_of(&t) {
            Ok(_) => todo.push((t, false)),
            Err(LoadError::IntegerTensor { .. }) => {
                kept.push(format!("{} ({})", Escaped(&t.name), t.ty));
                todo.push((t, true));
            }
            Err(_) if a.skip_unsupported => {
                skipped.push(format!("{} ({})", Escaped(&t.name), t.ty))
            }
            // The error first, then what to do about it.
            Err(e) => bail!("{e}; use --skip-unsupported to leave such tensors out"),
        }
    }
    if !skipped.is_empty() {
        // Once, on stderr (not also through `tracing`, which printed it a second time).
        eprintln!(
            "warning: left out {} tensor(s) of unsupported types: {}",
            skipped.len(),
            skipped.join(", ")
        );
    }

    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        if k == "general.alignment" {
            match v {
                MetaValue::U32(al) => w.set_alignment(*al),
                _ => bail!("{}: general.alignment is not a u32", a.file.display()),
            }
            continue;
        }
        w.add_metadata(k.clone(), v.clone())?;
    }

    let bar = ProgressBar::new(todo.iter().map(|(t, _)| t.n_elements).sum());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} elements {msg}")
            .expect("static template"),
    );
    for (t, integer) in todo {
        bar.set_message(Escaped(&t.name).to_string());
        if integer {
            // Indices or ids, not weights: their bytes and type as they are.
            w.add_tensor(t.name.clone(), &t.dims, t.ty, loader.tensor_raw(&t.name)?)?;
            bar.inc(t.n_elements);
            continue;
        }
        let values: Vec<u8> = match &backend {
            None => {
                let v = loader.dequantize_to_host(&t.name, CpuPath::Fast)?;
                quantforge::core::cpu::encode_as(&v, OutputDType::F32)
            }
            Some(b) => {
                let dt = loader.load_tensor_to_gpu(&t.name, b.as_ref(), OutputDType::F32)?;
                dt.download(b.as_ref())
                    .with_context(|| format!("downloading '{}'", Escaped(&t.name)))?
            }
        };
        w.add_tensor(t.name.clone(), &t.dims, GgmlType::F32, Cow::Owned(values))?;
        bar.inc(t.n_elements);
    }
    bar.finish_and_clear();
    if !kept.is_empty() {
        eprintln!(
            "kept {} integer tensor(s) as they are (not weights): {}",
            kept.len(),
            kept.join(", ")
        );
    }
    w.write_file(&a.output)?;
    eprintln!("wrote {}", a.output.display());
    Ok(ExitCode::SUCCESS)
}
