// Shared check for the `python_api` fuzz target and its corpus replay test
// (`crates/quantforge/tests/fuzz_corpus.rs`): the Rust entry points the Python package calls,
// with arguments as a Python caller may pass them.
//
// * `quant_loader::blocks::dequantize_host_blocks` (the CPU side of
//   `quantforge.torch.dequantize`): any type id, element count and lengths. It either fills the
//   output with the format's values or returns an error that names the blocks' type; it never
//   panics.
// * regions of a file (`safe_open(...).get_slice(...)[...]`, the TP shards): the input is parsed
//   as a GGUF file, and each tensor's region given by the input's first bytes is loaded into
//   host memory as f32 and as native blocks. A region that loads has the planned shape and
//   size, and its f32 values equal the whole tensor's at the same places; one that does not is
//   an error naming the file.

/// Name under which inputs are opened.
pub const PYTHON_API_FUZZ_NAME: &str = "fuzz-api.gguf";

/// Runs both checks on `data`. Panics on a broken promise.
pub fn check_python_api(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let (params, rest) = data.split_at(16);
    check_blocks(params, rest);
    check_regions(params, rest);
}

fn u32_at(p: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]])
}

fn check_blocks(p: &[u8], src: &[u8]) {
    use quantforge::core::{GgmlType, OutputDType};
    use quantforge::loader::blocks::dequantize_host_blocks;

    let ty = GgmlType(u32::from(p[0]) % 48);
    let elements = u64::from(u32_at(p, 1) % (1 << 16));
    let dtype = OutputDType::ALL[usize::from(p[5]) % 3];
    // The output as a caller sized it: right, or off by what the input says.
    let want = elements as usize * dtype.size();
    let len = match p[6] % 4 {
        0 => want.saturating_sub(usize::from(p[7])),
        _ => want,
    };
    let mut dst = vec![0u8; len];
    match dequantize_host_blocks(ty, elements, src, dtype, &mut dst) {
        Ok(()) => {
            let g = ty.geometry().expect("a type with values has a geometry");
            assert_eq!(
                elements % g.block_elems as u64,
                0,
                "{ty}: a partial block was accepted"
            );
            assert_eq!(
                src.len() as u64,
                elements / g.block_elems as u64 * g.block_bytes as u64
            );
            assert_eq!(len, want);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("blocks of "),
                "the error does not name the blocks: {msg}"
            );
        }
    }
}

fn check_regions(p: &[u8], file: &[u8]) {
    use quantforge::gguf::GgufFile;
    use quantforge::loader::{GgufLoader, LoadAs, LoaderOptions, Region};

    let Ok(parsed) = GgufFile::from_bytes(file.to_vec(), PYTHON_API_FUZZ_NAME) else {
        return;
    };
    let loader = GgufLoader::from_file(parsed, LoaderOptions::default());
    let names: Vec<String> = loader.file().tensor_names().map(str::to_owned).collect();
    for (i, name) in names.iter().enumerate().take(8) {
        let k = 8 + i % 8;
        let region = Region {
            rows: u64::from(p[k] % 8)..u64::from(p[k] % 8 + p[(k + 1) % 16] % 8),
            cols: u64::from(p[k] >> 3)..u64::from(p[k] >> 3) + u64::from(p[(k + 2) % 16]),
        };
        for as_ in [
            LoadAs::Values(quantforge::core::OutputDType::F32),
            LoadAs::Native,
        ] {
            match loader.load_to_host(name, Some(&region), as_) {
                Ok((host, row)) => {
                    let bytes = host.to_le_bytes();
                    let shape_elems: u64 = host.shape.iter().product();
                    assert_eq!(row.shape, host.shape);
                    if as_ != LoadAs::Native && row.path != quantforge::loader::LoadPath::Kept {
                        assert_eq!(bytes.len() as u64, shape_elems * 4, "{name}");
                        same_as_whole(&loader, name, &region, &bytes);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.starts_with(PYTHON_API_FUZZ_NAME),
                        "no file named: {msg}"
                    );
                }
            }
        }
    }
}

/// The region's f32 values equal the whole tensor's at the same places (bits, NaN payloads
/// included: the same CPU path made both).
fn same_as_whole(loader: &quantforge::loader::GgufLoader, name: &str, r: &Region, got: &[u8]) {
    use quantforge::loader::LoadAs;
    let Ok((whole, _)) = loader.load_to_host(
        name,
        None,
        LoadAs::Values(quantforge::core::OutputDType::F32),
    ) else {
        panic!("{name}: a region loaded but the whole tensor does not");
    };
    let whole = whole.to_le_bytes();
    let ne0 = loader
        .tensor(name)
        .expect("listed")
        .dims
        .first()
        .copied()
        .unwrap_or(1);
    let keep = (r.cols.end - r.cols.start) as usize;
    for (i, row) in (r.rows.start..r.rows.end).enumerate() {
        let at = ((row * ne0 + r.cols.start) * 4) as usize;
        assert_eq!(
            &got[i * keep * 4..(i + 1) * keep * 4],
            &whole[at..at + keep * 4],
            "{name}: row {row} of the region"
        );
    }
}

use quantforge::loader::Region;
