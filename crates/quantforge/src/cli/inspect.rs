//! `quantforge inspect FILE [--json]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use quantforge::gguf::{Escaped, GgufFile, MetaArray, MetaValue, OpenOptions};
use serde_json::{json, Value};

/// Arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file.
    file: PathBuf,
    /// Emit JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print arrays in full (text output abbreviates them).
    #[arg(long)]
    full: bool,
    /// Read the file with ordinary reads instead of mapping it. `inspect` always does: it reads
    /// only the header, however large the file (the flag is accepted, as on every command).
    #[arg(long)]
    no_mmap: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    // The header only, read unmapped: mapping a file of many GiB to read a few KiB fails under
    // an address-space limit, and a file truncated while mapped would raise SIGBUS.
    let _ = a.no_mmap;
    let f = GgufFile::open_with(&a.file, OpenOptions { mmap: false })?;
    if a.json {
        let meta: serde_json::Map<String, Value> = f
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), meta_json(v)))
            .collect();
        let tensors: Vec<Value> = f
            .tensors()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "type": t.ty.to_string(),
                    "type_id": t.ty.0,
                    "shape": t.dims,
                    "elements": t.n_elements,
                    "bytes": t.n_bytes,
                    "offset": f.data_offset() + t.offset,
                })
            })
            .collect();
        let doc = json!({
            "file": a.file.display().to_string(),
            "version": f.version(),
            "alignment": f.alignment(),
            "data_offset": f.data_offset(),
            "metadata": meta,
            "tensors": tensors,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{}: GGUF v{}, alignment {}, {} tensors, {} metadata keys",
        a.file.display(),
        f.version(),
        f.alignment(),
        f.tensors().len(),
        f.metadata().len()
    )?;
    writeln!(out, "\nmetadata:")?;
    // Keys and names are shown through `Escaped` and values through their `Display` (strings
    // quoted and escaped): nothing from the file reaches the terminal raw.
    for (k, v) in f.metadata() {
        let text = if a.full { full_text(v) } else { v.to_string() };
        writeln!(out, "  {:<40} {text}", Escaped(k))?;
    }
    writeln!(out, "\ntensors:")?;
    writeln!(
        out,
        "  {:<32} {:<8} {:<20} {:>12} {:>12}",
        "name", "type", "shape", "bytes", "offset"
    )?;
    for t in f.tensors() {
        writeln!(
            out,
            "  {:<32} {:<8} {:<20} {:>12} {:>12}",
            Escaped(&t.name),
            t.ty.to_string(),
            super::shape(&t.dims),
            t.n_bytes,
            f.data_offset() + t.offset
        )?;
    }
    let total: u64 = f.tensors().iter().map(|t| t.n_bytes).sum();
    writeln!(out, "\n  total tensor data: {}", super::human_bytes(total))?;
    Ok(ExitCode::SUCCESS)
}

fn meta_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::U8(x) => json!(x),
        MetaValue::I8(x) => json!(x),
        MetaValue::U16(x) => json!(x),
        MetaValue::I16(x) => json!(x),
        MetaValue::U32(x) => json!(x),
        MetaValue::I32(x) => json!(x),
        MetaValue::U64(x) => json!(x),
        MetaValue::I64(x) => json!(x),
        MetaValue::F32(x) => json!(x),
        MetaValue::F64(x) => json!(x),
        MetaValue::Bool(x) => json!(x),
        MetaValue::String(s) => json!(s),
        MetaValue::Array(a) => array_json(a),
    }
}

/// An array as JSON; inner arrays are borrowed, not copied, so the walk costs the array's size
/// whatever its depth.
fn array_json(a: &MetaArray) -> Value {
    match a.arrays() {
        Some(inner) => Value::Array(inner.iter().map(array_json).collect()),
        None => Value::Array(a.iter().map(|e| meta_json(&e)).collect()),
    }
}

/// A value in full for `--full`: strings whole (quoted, escaped as `Debug` escapes them), arrays
/// with every element, nested arrays included.
fn full_text(v: &MetaValue) -> String {
    match v {
        MetaValue::String(s) => format!("{s:?}"),
        MetaValue::Array(a) => full_array(a),
        other => other.to_string(),
    }
}

fn full_array(a: &MetaArray) -> String {
    let items: Vec<String> = match a.arrays() {
        Some(inner) => inner.iter().map(full_array).collect(),
        None => a.iter().map(|e| full_text(&e)).collect(),
    };
    format!("[{}; {}] [{}]", a.elem_type(), a.len(), items.join(", "))
}
