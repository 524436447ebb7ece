//! `quantforge inspect FILE [--json] [--full]`.
//!
//! Both outputs are written as the header is walked, straight to a buffered stdout: an array is
//! written element by element from the reader's compact storage ([`MetaArray`]), never copied
//! into a tree of values or one string first. So `inspect` needs no memory beyond the parsed
//! header, 8 bytes per metadata key (the JSON keeps its keys sorted) and a constant, whatever
//! the file holds.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use quantforge::gguf::{Escaped, GgufFile, MetaArray, MetaValue, OpenOptions};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Arrays longer than this are summarised in the JSON output unless `--full` is given.
const JSON_ARRAY_HEAD: usize = 64;

/// Arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file.
    file: PathBuf,
    /// Emit JSON instead of text.
    ///
    /// One object: `alignment`, `data_offset`, `file`, `metadata` (key to value), `tensors`,
    /// `version`. An array of up to 64 elements is a JSON array; a longer one, unless `--full`
    /// is given, is summarised as `{"type": "u8", "len": N, "truncated": true, "head": [its
    /// first 64 elements]}` (inner arrays likewise). Non-finite floats are `null`.
    #[arg(long, verbatim_doc_comment)]
    json: bool,
    /// Write arrays in full: every element, in the text output (which otherwise shows 6) and in
    /// the JSON output (which otherwise summarises arrays past 64 elements).
    #[arg(long)]
    full: bool,
    /// Read the file with ordinary reads instead of mapping it. `inspect` always does: it reads
    /// only the header, however large the file (the flag is accepted, as on every command).
    #[arg(long)]
    no_mmap: bool,
}

/// Runs `inspect`.
pub fn run(a: Args) -> Result<ExitCode> {
    // The header only, read unmapped: mapping a file of many GiB to read a few KiB fails under
    // an address-space limit, and a file truncated while mapped would raise SIGBUS.
    let _ = a.no_mmap;
    let f = GgufFile::open_with(&a.file, OpenOptions { mmap: false })?;
    // Buffered: the output of a large array is many small writes.
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if a.json {
        let head = (!a.full).then_some(JSON_ARRAY_HEAD);
        let doc = Doc {
            path: &a.file,
            f: &f,
            head,
        };
        let mut ser = serde_json::Serializer::pretty(&mut out);
        // As an `io::Error`, so that a closed pipe is recognised as one.
        doc.serialize(&mut ser).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &a, &f)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The text output: a summary line, the metadata, the tensor table and the total.
fn write_text(out: &mut impl Write, a: &Args, f: &GgufFile) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: GGUF v{}, alignment {}, {} tensors, {} metadata keys",
        a.file.display(),
        f.version(),
        f.alignment(),
        f.tensor_count(),
        f.metadata().len()
    )?;
    writeln!(out, "\nmetadata:")?;
    // Keys and names are shown through `Escaped` and values through their `Display` (strings
    // quoted and escaped): nothing from the file reaches the terminal raw.
    for (k, v) in f.metadata() {
        write!(out, "  {:<40} ", Escaped(k))?;
        if a.full {
            write_full(out, v)?;
        } else {
            write!(out, "{v}")?;
        }
        writeln!(out)?;
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
    let total: u64 = f.tensors().map(|t| t.n_bytes).sum();
    writeln!(out, "\n  total tensor data: {}", super::human_bytes(total))
}

/// A value in full for `--full`: strings whole (quoted, escaped as `Debug` escapes them), arrays
/// with every element, nested arrays included.
fn write_full(out: &mut impl Write, v: &MetaValue) -> std::io::Result<()> {
    match v {
        MetaValue::String(s) => write!(out, "{s:?}"),
        MetaValue::Array(a) => write_full_array(out, a),
        other => write!(out, "{other}"),
    }
}

/// An array for `--full`: `[u32; 3] [1, 2, 3]`, element by element.
fn write_full_array(out: &mut impl Write, a: &MetaArray) -> std::io::Result<()> {
    write!(out, "[{}; {}] [", a.elem_type(), a.len())?;
    match a.arrays() {
        Some(inner) => {
            for (i, x) in inner.iter().enumerate() {
                out.write_all(if i > 0 { b", " } else { b"" })?;
                write_full_array(out, x)?;
            }
        }
        None => {
            for (i, e) in a.iter().enumerate() {
                out.write_all(if i > 0 { b", " } else { b"" })?;
                write_full(out, &e)?;
            }
        }
    }
    out.write_all(b"]")
}

/// The `--json` document. Keys are written in sorted order (the order a `serde_json::Map`
/// keeps); `head` is the length past which arrays are summarised (`None`: never).
struct Doc<'a> {
    path: &'a Path,
    f: &'a GgufFile,
    head: Option<usize>,
}

impl Serialize for Doc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.f;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("alignment", &f.alignment())?;
        m.serialize_entry("data_offset", &f.data_offset())?;
        m.serialize_entry("file", &self.path.display().to_string())?;
        let metadata = Metadata {
            pairs: f.metadata(),
            head: self.head,
        };
        m.serialize_entry("metadata", &metadata)?;
        m.serialize_entry("tensors", &Tensors(f))?;
        m.serialize_entry("version", &f.version())?;
        m.end()
    }
}

/// The metadata as one object, keys sorted.
struct Metadata<'a> {
    pairs: &'a [(String, MetaValue)],
    head: Option<usize>,
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // References only: 8 bytes per pair, whatever the values hold.
        let mut sorted: Vec<&(String, MetaValue)> = self.pairs.iter().collect();
        sorted.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        let mut m = s.serialize_map(Some(sorted.len()))?;
        for (k, v) in sorted {
            m.serialize_entry(k, &Value { v, head: self.head })?;
        }
        m.end()
    }
}

/// The tensor table, one object per tensor, in the file's order.
struct Tensors<'a>(&'a GgufFile);

impl Serialize for Tensors<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut seq = s.serialize_seq(Some(f.tensor_count()))?;
        for t in f.tensors() {
            seq.serialize_element(&Tensor {
                bytes: t.n_bytes,
                elements: t.n_elements,
                name: &t.name,
                offset: f.data_offset() + t.offset,
                shape: &t.dims,
                ty: t.ty.to_string(),
                type_id: t.ty.0,
            })?;
        }
        seq.end()
    }
}

/// One tensor's entry, fields in sorted order.
#[derive(serde::Serialize)]
struct Tensor<'a> {
    bytes: u64,
    elements: u64,
    name: &'a str,
    offset: u64,
    shape: &'a [u64],
    #[serde(rename = "type")]
    ty: String,
    type_id: u32,
}

/// One metadata value.
struct Value<'a> {
    v: &'a MetaValue,
    head: Option<usize>,
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.v {
            MetaValue::U8(x) => s.serialize_u8(*x),
            MetaValue::I8(x) => s.serialize_i8(*x),
            MetaValue::U16(x) => s.serialize_u16(*x),
            MetaValue::I16(x) => s.serialize_i16(*x),
            MetaValue::U32(x) => s.serialize_u32(*x),
            MetaValue::I32(x) => s.serialize_i32(*x),
            MetaValue::U64(x) => s.serialize_u64(*x),
            MetaValue::I64(x) => s.serialize_i64(*x),
            // Widened: the shortest f64 text, which reads back as the f32's exact value.
            MetaValue::F32(x) => s.serialize_f64(f64::from(*x)),
            MetaValue::F64(x) => s.serialize_f64(*x),
            MetaValue::Bool(x) => s.serialize_bool(*x),
            MetaValue::String(x) => s.serialize_str(x),
            MetaValue::Array(a) => Array { a, head: self.head }.serialize(s),
        }
    }
}

/// An array: all its elements, or past `head` elements the summary object.
struct Array<'a> {
    a: &'a MetaArray,
    head: Option<usize>,
}

impl Serialize for Array<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (a, head) = (self.a, self.head);
        match head {
            Some(n) if a.len() > n => {
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("type", a.elem_type().name())?;
                m.serialize_entry("len", &a.len())?;
                m.serialize_entry("truncated", &true)?;
                m.serialize_entry("head", &Elements { a, n, head })?;
                m.end()
            }
            _ => Elements {
                a,
                n: a.len(),
                head,
            }
            .serialize(s),
        }
    }
}

/// The first `n` elements of an array, as a JSON array.
struct Elements<'a> {
    a: &'a MetaArray,
    n: usize,
    head: Option<usize>,
}

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.n))?;
        self.write(&mut seq)?;
        seq.end()
    }
}

impl Elements<'_> {
    /// Writes the elements from the array's typed storage: no element is copied into a value.
    fn write<Q: SerializeSeq>(&self, seq: &mut Q) -> Result<(), Q::Error> {
        let (a, n, head) = (self.a, self.n, self.head);
        macro_rules! slices {
            ($($view:ident),*) => {$(
                if let Some(v) = a.$view() {
                    return v[..n].iter().try_for_each(|x| seq.serialize_element(x));
                }
            )*};
        }
        slices!(
            as_u8s, as_i8s, as_u16s, as_i16s, as_u32s, as_i32s, as_bools, as_u64s, as_i64s, as_f64s
        );
        if let Some(v) = a.as_f32s() {
            // Widened, as a single f32 value is.
            return v[..n]
                .iter()
                .try_for_each(|x| seq.serialize_element(&f64::from(*x)));
        }
        if let Some(strs) = a.strs() {
            return strs.take(n).try_for_each(|x| seq.serialize_element(x));
        }
        if let Some(inner) = a.arrays() {
            return inner[..n]
                .iter()
                .try_for_each(|x| seq.serialize_element(&Array { a: x, head }));
        }
        // Left: an array built from values of mixed types, which the reader never makes.
        a.iter()
            .take(n)
            .try_for_each(|v| seq.serialize_element(&Value { v: &v, head }))
    }
}
