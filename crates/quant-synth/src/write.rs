//! [`write`]: streams a [`ModelPlan`] to a GGUF file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use quant_gguf::{GgufStreamWriter, GgufWriter, MetaValue};
use rayon::prelude::*;

use crate::fill::{chunk_seed, fill_tensor_chunk, supported_type};
use crate::plan::{ModelPlan, TensorPlan};
use crate::SynthError;

/// Target size of one generated chunk (rounded down to whole blocks). Chunks are the unit of
/// seeding, so changing this changes the bytes a seed gives.
const CHUNK_TARGET: usize = 512 * 1024;
/// Chunks generated together (in parallel) and handed to the writer as one buffer. At most
/// three such buffers exist at a time (one being generated, one queued, one being written):
/// 6 MiB, whatever the model size.
const BATCH_CHUNKS: usize = 4;

/// The metadata key recording the seed.
const SEED_KEY: &str = "quantforge.synth.seed";

/// Writes `plan` as a GGUF v3 file at `path` with random data from `seed` (the same plan and
/// seed give the same file). The file is written beside `path` under a temporary name and
/// renamed over it at the end, so a reader never sees a partial file; on error the temporary
/// file is removed. The metadata is the plan's plus `quantforge.synth.seed`.
///
/// `progress` is called with the number of tensor data bytes written so far (up to
/// [`ModelPlan::total_bytes`]) after every few MB. Memory use stays at a few MB whatever the
/// model size; generation runs on rayon's pool while the calling thread writes.
pub fn write(
    plan: &ModelPlan,
    path: impl AsRef<Path>,
    seed: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), SynthError> {
    let path = path.as_ref();
    let tmp = temp_path(path);
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| SynthError::Io {
            path: p,
            op,
            source,
        }
    };
    check_types(plan)?;
    let result = (|| {
        let file = File::create(&tmp).map_err(io("create", &tmp))?;
        let bw = BufWriter::with_capacity(1 << 16, file);
        let bw = write_inner(plan, bw, seed, progress, &tmp)?;
        bw.into_inner()
            .map_err(|e| io("write", &tmp)(e.into_error()))?;
        std::fs::rename(&tmp, path).map_err(io("rename", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// As [`write()`], into any sink (`name` is used in errors); returns the sink.
pub fn write_to<W: Write>(
    plan: &ModelPlan,
    w: W,
    seed: u64,
    progress: &mut dyn FnMut(u64),
    name: impl Into<PathBuf>,
) -> Result<W, SynthError> {
    check_types(plan)?;
    write_inner(plan, w, seed, progress, &name.into())
}

fn check_types(plan: &ModelPlan) -> Result<(), SynthError> {
    match plan.tensors.iter().find(|t| !supported_type(t.ty)) {
        Some(t) => Err(SynthError::UnsupportedType {
            tensor: t.name.clone(),
            ty: t.ty,
        }),
        None => Ok(()),
    }
}

fn write_inner<W: Write>(
    plan: &ModelPlan,
    w: W,
    seed: u64,
    progress: &mut dyn FnMut(u64),
    path: &Path,
) -> Result<W, SynthError> {
    let gguf = |source| SynthError::Gguf {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let mut spec = GgufWriter::new();
    for (k, v) in &plan.metadata {
        spec.add_metadata(k.clone(), v.clone()).map_err(gguf)?;
    }
    spec.add_metadata(SEED_KEY, MetaValue::U64(seed))
        .map_err(gguf)?;
    for t in &plan.tensors {
        spec.declare_tensor(t.name.clone(), &t.dims, t.ty)
            .map_err(gguf)?;
    }
    let mut out = GgufStreamWriter::new(w, &spec, path).map_err(gguf)?;
    let mut done = 0u64;
    for (i, t) in plan.tensors.iter().enumerate() {
        out.write_tensor(|sink| stream_tensor(t, i as u64, seed, sink, &mut done, progress))
            .map_err(gguf)?;
    }
    out.finish().map_err(gguf)
}

/// Generates one tensor's bytes batch by batch on a helper thread (each batch's chunks in
/// parallel) while this thread writes the previous batch to `sink`.
fn stream_tensor(
    t: &TensorPlan,
    index: u64,
    seed: u64,
    sink: &mut dyn Write,
    done: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let block_bytes = t.ty.geometry().map_or(1, |g| g.block_bytes);
    let chunk_bytes = (CHUNK_TARGET / block_bytes).max(1) * block_bytes;
    let total = t.n_bytes as usize;
    let batch_bytes = chunk_bytes * BATCH_CHUNKS;
    let ty = t.ty;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(1);
        let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            let mut start = 0usize;
            while start < total {
                let len = batch_bytes.min(total - start);
                let mut buf = back_rx.try_recv().unwrap_or_default();
                buf.resize(len, 0);
                let first_chunk = (start / chunk_bytes) as u64;
                buf.par_chunks_mut(chunk_bytes)
                    .enumerate()
                    .for_each(|(k, c)| {
                        let s = chunk_seed(seed, index, first_chunk + k as u64);
                        // Types were checked before writing began.
                        let _ = fill_tensor_chunk(ty, c, s);
                    });
                if tx.send(buf).is_err() {
                    return; // The writer stopped on an error.
                }
                start += len;
            }
        });
        for buf in rx {
            sink.write_all(&buf)?;
            *done += buf.len() as u64;
            progress(*done);
            let _ = back_tx.send(buf);
        }
        Ok(())
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "synth.gguf".into());
    path.with_file_name(format!(".{name}.synth-tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linked_formats::{require, unlinked_quantized_type};
    use crate::{plan, supported_type, Arch, Mix, Size};
    use quant_gguf::GgufFile;

    /// Every mix of the formats the tests require can be written; the others can once their
    /// formats are linked, and are refused until then.
    #[test]
    fn tiny_model_round_trips_and_dequantizes_finite() {
        require();
        let mut written = Vec::new();
        let plans = Arch::ALL
            .iter()
            .flat_map(|&a| a.mixes().iter().map(move |&m| (a, m)));
        for (arch, mix) in plans {
            let p = plan(arch, Size::TestTiny, mix).unwrap();
            if let Some(t) = p.tensors.iter().find(|t| !supported_type(t.ty)) {
                let e = write_to(&p, Vec::new(), 7, &mut |_| {}, "tiny").unwrap_err();
                assert!(
                    matches!(&e, SynthError::UnsupportedType { tensor, ty }
                        if *tensor == t.name && *ty == t.ty),
                    "{arch} {mix}: {e}"
                );
                continue;
            }
            written.push(mix);
            let mut calls = Vec::new();
            let bytes = write_to(&p, Vec::new(), 7, &mut |b| calls.push(b), "tiny").unwrap();
            assert_eq!(calls.last(), Some(&p.total_bytes()), "{arch} {mix}");
            assert!(calls.windows(2).all(|w| w[0] < w[1]));
            let f = GgufFile::from_bytes(bytes.clone(), "tiny.gguf").unwrap();
            assert_eq!(f.tensor_count(), p.tensors.len());
            assert_eq!(f.get(SEED_KEY), Some(&MetaValue::U64(7)));
            for (k, v) in &p.metadata {
                assert_eq!(f.get(k), Some(v), "{k}");
            }
            for t in &p.tensors {
                let info = f.tensor(&t.name).unwrap();
                assert_eq!((info.ty, &info.dims), (t.ty, &t.dims), "{}", t.name);
                let data = &*f.tensor_data(&info).unwrap();
                let fmt = quant_core::lookup(t.ty).unwrap();
                let mut out = vec![0f32; t.n_elements as usize];
                fmt.dequantize_reference(data, &mut out);
                assert!(out.iter().all(|x| x.is_finite()), "{arch} {mix} {}", t.name);
            }
            // Deterministic, and the seed matters.
            let again = write_to(&p, Vec::new(), 7, &mut |_| {}, "tiny").unwrap();
            assert_eq!(again, bytes);
            let other = write_to(&p, Vec::new(), 8, &mut |_| {}, "tiny").unwrap();
            assert_ne!(other, bytes);
        }
        // Those of the required formats at the least.
        for mix in [Mix::F16, Mix::Q4_0, Mix::Q8_0, Mix::Q4KM, Mix::Q6K] {
            assert!(written.contains(&mix), "{mix} was not written");
        }
    }

    #[test]
    fn multi_chunk_tensors_differ_between_chunks() {
        // token_embd of test-tiny in F32 is 512 KiB: force several chunks with a larger plan.
        let mut p = plan(Arch::Llama, Size::TestTiny, Mix::F16).unwrap();
        p.tensors.truncate(1);
        p.tensors[0].dims = vec![256, 8192];
        p.tensors[0].n_elements = 256 * 8192;
        p.tensors[0].n_bytes = 256 * 8192 * 2; // 4 MiB: 8 chunks, 2 batches.
        let bytes = write_to(&p, Vec::new(), 1, &mut |_| {}, "big").unwrap();
        let f = GgufFile::from_bytes(bytes, "big.gguf").unwrap();
        let d = f
            .tensor_data(&f.tensor("token_embd.weight").unwrap())
            .unwrap();
        let c = CHUNK_TARGET;
        assert_ne!(d[..64], d[c..c + 64]);
        assert_ne!(d[..64], d[4 * c..4 * c + 64]);
    }

    #[test]
    fn write_file_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let p = plan(Arch::Llama, Size::TestTiny, Mix::Q4KM).unwrap();
        write(&p, &path, 3, &mut |_| {}).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.tensor_count(), p.tensors.len());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A type without synthesis support is refused before anything is written.
        let mut bad = p.clone();
        bad.tensors[0].ty = unlinked_quantized_type();
        let e = write(&bad, dir.path().join("bad.gguf"), 0, &mut |_| {}).unwrap_err();
        assert!(matches!(e, SynthError::UnsupportedType { .. }), "{e}");
        assert!(!dir.path().join("bad.gguf").exists());
        // An unwritable place: an Io error naming the file, nothing left behind.
        let e = write(&p, dir.path().join("no/dir/m.gguf"), 0, &mut |_| {}).unwrap_err();
        assert!(matches!(e, SynthError::Io { op: "create", .. }), "{e}");
        // A plan whose sizes disagree with its shapes is refused by the GGUF writer.
        let mut bad = p.clone();
        bad.tensors[1].dims = vec![100];
        let e = write(&bad, dir.path().join("bad.gguf"), 0, &mut |_| {}).unwrap_err();
        assert!(matches!(e, SynthError::Gguf { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
